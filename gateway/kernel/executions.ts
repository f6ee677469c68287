/**
 * What the kernel owes its clients: the table of requests awaiting a reply, the execution running
 * now, its deadline and the interrupt → kill ladder (shared with client interrupts), the sweep
 * after a deadline, and the one KeyboardInterrupt → ExecutionTimeout rewrite of what the deadline
 * ended.
 */
import { performance } from 'node:perf_hooks';
import type { Channel, Header, RawMessage } from '../../protocol/index.js';
import type { ClientChannels } from '../channels/client-channels.js';
import { parseObjectOrEmpty, peekParent } from '../channels/parent-peek.js';
import {
  ExecutionDeadline,
  InterruptLadder,
  sweepAfterDeadline,
  type SweepPolicy,
  type Timers,
} from '../base/deadline.js';
import { clip } from '../base/log-limit.js';
import type { Logger } from '../base/logger.js';
import type { MetricsSink } from '../base/metrics.js';
import type { Sandbox } from '../runtime/runtime.js';
import { asExecutionTimeout, deadlineTimeoutText } from './execution-timeout.js';
import { MAX_PENDING } from './kernel-model.js';
import { sweepSandbox } from './sandbox-sweep.js';
import type { Synthetic } from './synthetic.js';

/** Largest content the gateway parses for its own decisions (a status, a reply's status). */
export const POLICY_PARSE_MAX = 1024 ** 2;

export function parsePolicyJson(buf: Buffer): Record<string, unknown> {
  return parseObjectOrEmpty(buf, POLICY_PARSE_MAX);
}

interface PendingRequest {
  header: Header;
  channel: Channel;
  client: ClientChannels;
  /** performance.now() when the request was sent (execution durations). */
  at: number;
}

/** Who started the interrupt ladder: the execution deadline or a client. */
export type LadderCause = 'deadline' | 'interrupt';

/** What the executions need from their kernel. */
export interface ExecutionsHost {
  /** Sends interrupt_request on control. */
  sendInterrupt(cause: 'deadline' | 'request'): Promise<void>;
  /** Kills the sandbox (the ladder's last step). */
  kill(reason: string, cause: LadderCause): Promise<void>;
  /** The current sandbox. */
  sandbox(): Sandbox | undefined;
  /** Restarts on a fresh sandbox after the deadline sweep found what the execution left. */
  restartAfterDeadline(sandbox: Sandbox, why: string): Promise<void>;
}

export interface ExecutionsOptions {
  execTimeoutMs: number;
  killGraceMs: number;
  deadlineSweep?: SweepPolicy | undefined;
  timers: Timers;
  synthetic: Synthetic;
  log: Logger;
  metrics?: MetricsSink | undefined;
}

export class Executions {
  #pending = new Map<string, PendingRequest>();
  #timedOut = new Set<string>();
  #active: string | undefined;
  /** Executions started (the deadline sweep judges only a window in which none did). */
  #started = 0;
  #cause: LadderCause = 'interrupt';
  readonly #deadline: ExecutionDeadline;
  readonly #ladder: InterruptLadder;

  constructor(
    private readonly host: ExecutionsHost,
    private readonly o: ExecutionsOptions,
  ) {
    this.#deadline = new ExecutionDeadline(o.execTimeoutMs, o.timers);
    this.#ladder = new InterruptLadder(
      {
        interrupt: () => host.sendInterrupt(this.#cause === 'deadline' ? 'deadline' : 'request'),
        kill: () =>
          host.kill(
            this.#cause === 'deadline'
              ? `killed by the watchdog: the execution exceeded the ${o.execTimeoutMs / 1000} s limit and did not stop after an interrupt`
              : 'killed: the execution did not stop after an interrupt request',
            this.#cause,
          ),
      },
      o.killGraceMs,
      o.timers,
    );
  }

  /** The execution running now (its msg_id), if any. */
  get active(): string | undefined {
    return this.#active;
  }

  /** Who started the ladder climbing now (or last). */
  get cause(): LadderCause {
    return this.#cause;
  }

  /** Records a client's request; false (after an error reply) when the table is full. */
  track(client: ClientChannels, raw: RawMessage): boolean {
    if (this.#pending.size >= MAX_PENDING) {
      this.o.synthetic.replyError(
        client,
        raw.header,
        raw.channel,
        'TooManyPendingRequests',
        `The kernel has ${this.#pending.size} requests without a reply; request dropped.`,
      );
      return false;
    }
    this.#pending.set(raw.header.msg_id, {
      header: raw.header,
      channel: raw.channel,
      client,
      at: performance.now(),
    });
    return true;
  }

  /** Drops a client session's pending requests (nobody can read their replies any more). */
  forgetClient(client: ClientChannels): void {
    for (const [id, p] of this.#pending) if (p.client === client) this.#pending.delete(id);
  }

  /** A reply from the kernel settles its request; an execute_reply the deadline ended says so. */
  settle(raw: RawMessage): RawMessage {
    const parentId = peekParent(raw.parentHeader).msg_id;
    if (parentId === undefined) return raw;
    const pending = this.#pending.get(parentId);
    this.#pending.delete(parentId);
    if (raw.header.msg_type !== 'execute_reply') return raw;
    if (this.#timedOut.has(parentId)) {
      this.#timedOut.delete(parentId);
      const { out, content } = this.#rewrite(raw, true);
      if (pending) this.#answered(pending, content.status);
      return out;
    }
    if (pending) this.#answered(pending, parsePolicyJson(raw.content).status);
    return raw;
  }

  /** The kernel reports the deadline's interrupt as KeyboardInterrupt: say what happened. */
  rewriteError(raw: RawMessage, parentId: string): RawMessage {
    return this.#timedOut.has(parentId) ? this.#rewrite(raw, false).out : raw;
  }

  #rewrite(raw: RawMessage, reply: boolean): { out: RawMessage; content: Record<string, unknown> } {
    const content = asExecutionTimeout(
      parsePolicyJson(raw.content),
      deadlineTimeoutText(this.o.execTimeoutMs),
      reply ? { traceback: 'keep', reply } : { traceback: 'replace' },
    );
    return { out: { ...raw, content: Buffer.from(JSON.stringify(content)) }, content };
  }

  /** The kernel said an execution started (busy or execute_input): its deadline runs. */
  started(msgId: string): void {
    this.#active = msgId;
    this.#started++;
    this.#deadline.arm(msgId, () => {
      void this.#onDeadline(msgId);
    });
  }

  /** The execution's idle came. */
  ended(msgId: string): void {
    this.#deadline.disarm(msgId);
    if (this.#active === msgId) this.#active = undefined;
    this.#ladder.settle();
  }

  /** Something other than an execution ended (an interrupt worked): stops the ladder. */
  settleLadder(): void {
    this.#ladder.settle();
  }

  /** A client's interrupt: the ladder when an execution runs, else false (nothing to climb). */
  interrupt(busy: boolean): boolean {
    if (this.#active === undefined && !busy) return false;
    if (!this.#ladder.running) this.#cause = 'interrupt';
    void this.#ladder.run();
    return true;
  }

  async #onDeadline(msgId: string): Promise<void> {
    this.o.log.warn(
      { msg_id: clip(msgId), limit_ms: this.o.execTimeoutMs },
      'execution deadline reached: interrupting',
    );
    this.o.metrics?.executionTimeout();
    this.#timedOut.add(msgId);
    if (!this.#ladder.running) this.#cause = 'deadline';
    const outcome = await this.#ladder.run();
    this.o.log.warn({ msg_id: clip(msgId), outcome }, 'execution deadline handled');
    if (outcome === 'interrupted' && this.o.deadlineSweep) await this.#sweep(this.o.deadlineSweep);
  }

  /** Deadline completeness: see {@link sweepAfterDeadline}. */
  async #sweep(policy: SweepPolicy): Promise<void> {
    const sandbox = this.host.sandbox();
    if (!sandbox) return;
    const r = await sweepAfterDeadline(
      {
        sweep: (windowMs, samples) => sweepSandbox(sandbox, windowMs, samples),
        activity: () => ({ started: this.#started, busy: this.#active !== undefined }),
        restart: (why) => this.host.restartAfterDeadline(sandbox, why),
      },
      policy,
    ).catch((err: unknown) => {
      this.o.log.error({ err: String(err) }, 'deadline sweep failed');
      return undefined;
    });
    if (r) this.o.log.info({ ...r }, 'deadline sweep done');
  }

  /**
   * The sandbox died. The execution the ladder was stopping gets ExecutionKilled (when the deadline
   * had ended it, or `killedByLadder`); everything else is settled by {@link settleAll}.
   */
  sandboxDied(killedByLadder: boolean): void {
    this.#deadline.disarmAll();
    this.#ladder.settle();
    const active = this.#active;
    this.#active = undefined;
    if (!active || !(this.#timedOut.has(active) || killedByLadder)) return;
    this.#timedOut.delete(active);
    const p = this.#pending.get(active);
    if (!p) return;
    this.#pending.delete(active);
    const evalue =
      this.#cause === 'deadline'
        ? `Execution exceeded the ${this.o.execTimeoutMs / 1000} s limit, did not stop on interrupt, and the sandbox was killed.`
        : 'Execution did not stop after an interrupt request, and the sandbox was killed.';
    this.o.synthetic.replyError(p.client, p.header, p.channel, 'ExecutionKilled', evalue);
    this.#answered(p, 'error');
  }

  disarmAll(): void {
    this.#deadline.disarmAll();
  }

  /** Settles every pending request with an error (restart, death, shutdown). */
  settleAll(ename: string, evalue: string): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#timedOut.clear();
    for (const p of pending) {
      this.o.synthetic.replyError(p.client, p.header, p.channel, ename, evalue);
      if (p.header.msg_type === 'execute_request') this.#answered(p, 'error');
    }
  }

  /** An execute_request got its reply (from the kernel, or from the gateway for a dead kernel). */
  #answered(p: PendingRequest, status: unknown): void {
    const s = status === 'ok' || status === 'aborted' ? status : 'error';
    const seconds = (performance.now() - p.at) / 1000;
    this.o.metrics?.execution(s, seconds);
    this.o.log.debug(
      {
        session: p.client.sessionId,
        msg_id: p.header.msg_id,
        status: s,
        duration_ms: Math.round(seconds * 1000),
      },
      'execute_reply',
    );
  }
}
