/**
 * What the kernel's iopub messages mean to the gateway before they are fanned out: the kernel's
 * execution state (busy/idle of tracked requests), when executions start and end (their deadline),
 * the timeout rewrite of their error output, and the output rate limit (a request's own busy and
 * idle pass even a full window: clients wait for them).
 */
import { rawSize, type RawMessage } from '../../protocol/index.js';
import { peekExecutionState, peekParent } from '../channels/parent-peek.js';
import type { Executions } from './executions.js';
import { POLICY_PARSE_MAX } from './executions.js';
import { IopubRateLimit } from './iopub-rate-limit.js';
import { MAX_PENDING, UNTRACKED, type ExecutionState } from './kernel-model.js';

/** What the iopub state needs from its kernel. */
export interface IopubHost {
  state(): ExecutionState;
  setState(state: ExecutionState): void;
  /** The kernel was used now (its culling clock restarts). */
  touch(): void;
  readonly executions: Executions;
  /** The gateway's own session: what answers its probes stays between it and the kernel. */
  readonly gatewaySession: string;
  /** Every attached client, and the one whose request it answers even when detached. */
  fanOut(raw: RawMessage, parentSession: string | undefined): void;
  /** Tells every attached client (the rate limit's notice). */
  broadcastNotice(text: string): void;
}

export class IopubState {
  /**
   * Requests sent to the kernel whose busy/idle has not all come back: msg_id → its msg_type and
   * how many status messages of it may still pass a full rate-limit window (busy and idle).
   */
  #awaitingStatus = new Map<string, { msgType: string; left: number }>();
  readonly #rate: IopubRateLimit;

  constructor(
    private readonly host: IopubHost,
    private readonly limits: { msgsPerSecond: number; bytesPerSecond: number },
  ) {
    this.#rate = new IopubRateLimit({ ...limits, windowMs: 3000 });
  }

  /** Remembers a request sent to the kernel, whose busy and idle may pass a full rate window. */
  awaitStatus(msgId: string, msgType: string): void {
    // Bounded like the pending table; the oldest entries are the ones whose idle never came.
    while (this.#awaitingStatus.size >= MAX_PENDING) {
      const oldest = this.#awaitingStatus.keys().next().value;
      if (oldest === undefined) break;
      this.#awaitingStatus.delete(oldest);
    }
    this.#awaitingStatus.set(msgId, { msgType, left: 2 });
  }

  clear(): void {
    this.#awaitingStatus.clear();
  }

  /** One message from the kernel's iopub (decoded by the gate). */
  onMessage(decoded: RawMessage): void {
    const host = this.host;
    let raw = decoded;
    const type = raw.header.msg_type;
    const {
      msg_id: parentId,
      msg_type: parentType,
      session: parentSession,
    } = peekParent(raw.parentHeader);

    const tracked = parentType === undefined || !UNTRACKED.has(parentType);
    // Most status contents are one of a few exact byte strings: recognised without a parse.
    const state = type === 'status' ? peekExecutionState(raw.content, POLICY_PARSE_MAX) : undefined;
    if (type === 'status') {
      // Control requests (interrupt, shutdown, debug) and probes get busy/idle from the control
      // thread while an execution runs: they must not flip the kernel to idle (as in Jupyter Server).
      if (
        tracked &&
        (state === 'busy' || state === 'idle' || state === 'starting') &&
        host.state() !== 'restarting' &&
        host.state() !== 'dead'
      ) {
        host.setState(state);
      }
      if (parentType === 'execute_request' && parentId) {
        if (state === 'busy') host.executions.started(parentId);
        else if (state === 'idle') host.executions.ended(parentId);
      } else if (tracked && state === 'idle' && host.executions.active === undefined) {
        // A shell handler other than execute (a comm message, say) ended: an interrupt worked.
        host.executions.settleLadder();
      }
    } else if (type === 'execute_input' && parentId) {
      host.executions.started(parentId);
    }
    // Output and the busy/idle of tracked requests count (so a long silent execution's end does);
    // the kernel's bare start-up status and what answers probes or interrupts do not.
    if (tracked && (type !== 'status' || parentType !== undefined)) host.touch();
    if (type === 'error' && parentId) raw = host.executions.rewriteError(raw, parentId);
    // The gateway's own probes stay between the gateway and the kernel.
    if (parentSession === host.gatewaySession) return;
    const verdict = this.#rate.enabled
      ? this.#rate.check(rawSize(raw), this.#statusExempt(type, state, parentId))
      : 'pass';
    if (verdict === 'pass') {
      host.fanOut(raw, parentSession);
    } else if (verdict === 'drop-and-notify') {
      host.broadcastNotice(
        'IOPub output rate exceeded: output is dropped until this execution ends ' +
          `(limits: ${this.limits.msgsPerSecond || 'no'} messages/s, ${this.limits.bytesPerSecond || 'no'} bytes/s; ` +
          'AIDO_IOPUB_MSG_RATE_LIMIT, AIDO_IOPUB_DATA_RATE_LIMIT).',
      );
    }
  }

  /**
   * Whether a status message is the busy or idle of a request the gateway sent (so it passes even
   * a full rate window: clients wait for it). The first idle of an execution also starts a fresh
   * window. A status the kernel made up, or repeats, is counted and dropped like any output.
   */
  #statusExempt(type: string, state: unknown, parentId: string | undefined): boolean {
    if (type !== 'status' || parentId === undefined) return false;
    const awaiting = this.#awaitingStatus.get(parentId);
    if (!awaiting || awaiting.left <= 0) return false;
    if (state === 'idle') {
      this.#awaitingStatus.delete(parentId);
      if (awaiting.msgType === 'execute_request') this.#rate.idle();
      return true;
    }
    if (state !== 'busy') return false;
    awaiting.left--;
    return true;
  }
}
