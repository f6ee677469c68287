/**
 * Waits until a sandboxed kernel answers: kernel_info_request on a throw-away DEALER until a
 * reply arrives and an iopub message has been seen on a throw-away SUB. Used by the warm pool to
 * know a sandbox is ready before any kernel is bound to it.
 */
import { randomUUID } from 'node:crypto';
import { createMessage, decodeZmq, encodeZmq, Signer, toRaw } from '../../protocol/index.js';
import { GatewayError } from '../base/errors.js';
import { decodeLimits, PROBE_LIMITS, zmqInbound } from '../channels/inbound-gate.js';
import { describeSandboxExit, type Sandbox, type SandboxExit } from '../runtime/runtime.js';
import { ZmqLink } from '../runtime/zmq-link.js';

export async function waitForKernel(sandbox: Sandbox, timeoutMs: number): Promise<void> {
  const signer = new Signer(sandbox.connection.key);
  const session = `probe-${randomUUID()}`;
  // Set from socket callbacks; an object so the loop below rereads it.
  const seen = { reply: false, iopub: false };
  let exit: SandboxExit | undefined;
  void sandbox.exited.then((e) => (exit = e));
  let wake: (() => void) | undefined;
  const shell = ZmqLink.dealer(
    sandbox.connection.endpoints.shell,
    session,
    (frames) => {
      try {
        if (
          decodeZmq(frames, 'shell', signer, undefined, decodeLimits(PROBE_LIMITS)).raw.header
            .msg_type === 'kernel_info_reply'
        )
          seen.reply = true;
        wake?.();
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
      seen.iopub = true;
      wake?.();
    },
    () => undefined,
    zmqInbound(PROBE_LIMITS),
  );
  const deadline = Date.now() + timeoutMs;
  try {
    while (!(seen.reply && seen.iopub)) {
      if (exit) {
        throw new GatewayError(
          'KERNEL_START_FAILED',
          `the sandbox stopped while starting (${describeSandboxExit(exit)})`,
        );
      }
      if (Date.now() > deadline)
        throw new GatewayError(
          'KERNEL_START_FAILED',
          `the kernel did not answer kernel_info within ${timeoutMs} ms`,
        );
      shell.send(
        encodeZmq(
          toRaw(
            createMessage({
              msgType: 'kernel_info_request',
              channel: 'shell',
              session,
              content: {},
            }),
          ),
          signer,
        ),
      );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 250);
        wake = () => {
          if (seen.reply && seen.iopub) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
    }
  } finally {
    wake = undefined;
    shell.close();
    iopub.close();
  }
}
