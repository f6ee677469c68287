/**
 * The one readiness probe: kernel_info_request until a reply arrives and an iopub message has been
 * seen. {@link probeUntilReady} is the loop (and its error texts), over whatever sockets the caller
 * has: the kernel's own links at boot, or throw-away ones ({@link waitForKernel}, used by the warm
 * pool to know a sandbox is ready before any kernel is bound to it).
 */
import { randomUUID } from 'node:crypto';
import { createMessage, decodeZmq, encodeZmq, Signer, toRaw } from '../../protocol/index.js';
import { GatewayError } from '../base/errors.js';
import { decodeLimits, PROBE_LIMITS, zmqInbound } from '../channels/inbound-gate.js';
import { describeSandboxExit, type Sandbox, type SandboxExit } from '../runtime/runtime.js';
import { ZmqLink } from '../runtime/zmq-link.js';

/** How long one kernel_info_request waits for its reply before the next is sent. */
const ASK_INTERVAL_MS = 250;
/** The probe's decode limits, built once. */
const PROBE_DECODE_LIMITS = decodeLimits(PROBE_LIMITS);

export interface ProbeSteps {
  /** Sends one kernel_info_request; true when its reply came within `waitMs`. */
  ask(waitMs: number): Promise<boolean>;
  /** Whether an iopub message arrived on the subscription the caller will use. */
  iopubSeen(): boolean;
  /** A reason to stop waiting (the kernel was shut down meanwhile), else undefined. */
  cancelled?(): GatewayError | undefined;
}

/** Probes until the kernel replied to kernel_info and iopub is live; throws KERNEL_START_FAILED. */
export async function probeUntilReady(
  sandbox: Sandbox,
  timeoutMs: number,
  steps: ProbeSteps,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exit: SandboxExit | undefined;
  void sandbox.exited.then((e) => (exit = e));
  let replied = false;
  while (!(replied && steps.iopubSeen())) {
    if (exit) {
      throw new GatewayError(
        'KERNEL_START_FAILED',
        `the sandbox stopped while starting (${describeSandboxExit(exit)})`,
      );
    }
    const cancelled = steps.cancelled?.();
    if (cancelled) throw cancelled;
    if (Date.now() > deadline) {
      throw new GatewayError(
        'KERNEL_START_FAILED',
        `the kernel did not answer kernel_info within ${timeoutMs} ms`,
      );
    }
    if (await steps.ask(ASK_INTERVAL_MS)) replied = true;
  }
}

/** The probe over a throw-away shell DEALER and iopub SUB. */
export async function waitForKernel(sandbox: Sandbox, timeoutMs: number): Promise<void> {
  const signer = new Signer(sandbox.connection.key);
  const session = `probe-${randomUUID()}`;
  let iopubSeen = false;
  let onReply: (() => void) | undefined;
  const shell = ZmqLink.dealer(
    sandbox.connection.endpoints.shell,
    session,
    (frames) => {
      try {
        if (
          decodeZmq(frames, 'shell', signer, PROBE_DECODE_LIMITS).raw.header.msg_type ===
          'kernel_info_reply'
        )
          onReply?.();
      } catch {
        // not a valid reply: keep waiting
      }
    },
    () => undefined,
    zmqInbound(PROBE_LIMITS),
  );
  const iopub = ZmqLink.subscriber(
    sandbox.connection.endpoints.iopub,
    () => {
      iopubSeen = true;
    },
    () => undefined,
    zmqInbound(PROBE_LIMITS),
  );
  try {
    await probeUntilReady(sandbox, timeoutMs, {
      iopubSeen: () => iopubSeen,
      ask: (waitMs) =>
        new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => {
            resolve(false);
          }, waitMs);
          onReply = () => {
            clearTimeout(timer);
            resolve(true);
          };
          const request = createMessage({
            msgType: 'kernel_info_request',
            channel: 'shell',
            session,
            content: {},
          });
          shell.send(encodeZmq(toRaw(request), signer));
        }),
    });
  } finally {
    onReply = undefined;
    shell.close();
    iopub.close();
  }
}
