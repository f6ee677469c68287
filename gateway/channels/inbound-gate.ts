/**
 * The one gate for everything a sandbox sends over ZeroMQ. The kernel holds its own key, so a
 * valid signature proves nothing about size or shape: every socket that reads from a sandbox gets
 * libzmq's frame-size and queue bounds, and every message is decoded here with byte limits that
 * are checked before the HMAC and before any JSON parse. A message that breaks them is dropped and
 * counted as a protocol violation of that kernel; past `abuseLimit` violations the kernel is
 * killed ("protocol abuse"). No legitimate ipykernel ever commits one.
 */
import {
  decodeZmq,
  ProtocolError,
  type Channel,
  type RawMessage,
  type Signer,
  type ZmqLimits,
} from '../../protocol/index.js';
import type { GatewayConfig } from '../base/config.js';
import type { MetricsSink } from '../base/metrics.js';
import type { ZmqInbound } from '../runtime/zmq-link.js';

/** The bounds of {@link InboundGate}, from the configuration. */
export interface InboundLimits {
  /** Largest frame (libzmq's ZMQ_MAXMSGSIZE) and largest message (all frames), in bytes. */
  maxMessageBytes: number;
  /** Messages libzmq queues per peer before it stops reading (ZMQ_RCVHWM). */
  receiveHighWaterMark: number;
  /** Most frames per message (the four JSON parts, signature, delimiter and buffers). */
  maxFrames: number;
  /** Most bytes of a header, and of a parent_header. */
  maxHeaderBytes: number;
  /** Most bytes of a metadata part. */
  maxMetadataBytes: number;
  /** Violations one sandbox may commit before it is killed (0: never kill, only report). */
  abuseLimit: number;
}

/** The limits the configuration sets. */
export function inboundLimits(config: GatewayConfig): InboundLimits {
  return {
    maxMessageBytes: config.zmqMaxMessageSize,
    receiveHighWaterMark: config.zmqReceiveHwm,
    maxFrames: config.kernelMaxFrames,
    maxHeaderBytes: config.kernelMaxHeaderBytes,
    maxMetadataBytes: config.kernelMaxMetadataBytes,
    abuseLimit: config.kernelAbuseLimit,
  };
}

/** What a sandbox still waiting in the warm pool (no user code yet) may send the readiness probe. */
export const PROBE_LIMITS: InboundLimits = {
  maxMessageBytes: 1024 ** 2,
  receiveHighWaterMark: 100,
  maxFrames: 16,
  maxHeaderBytes: 64 * 1024,
  maxMetadataBytes: 64 * 1024,
  abuseLimit: 0,
};

/** The decode limits {@link decodeZmq} applies for `limits`. */
export function decodeLimits(limits: InboundLimits): ZmqLimits {
  return {
    maxFrames: limits.maxFrames,
    maxBytes: limits.maxMessageBytes,
    // A kernel's ROUTER and PUB put at most one identity (or topic) frame before the delimiter.
    maxIdentities: 1,
    maxHeaderBytes: limits.maxHeaderBytes,
    maxMetadataBytes: limits.maxMetadataBytes,
  };
}

/** The libzmq bounds of a socket that reads from a sandbox. */
export function zmqInbound(limits: InboundLimits, onDisconnect?: () => void): ZmqInbound {
  return {
    maxMessageSize: limits.maxMessageBytes,
    receiveHighWaterMark: limits.receiveHighWaterMark,
    ...(onDisconnect ? { onDisconnect } : {}),
  };
}

export interface InboundGateDeps {
  /** Writes a (rate-limited) warning about this kernel. */
  warn: (fields: Record<string, unknown>, msg: string) => void;
  metrics?: MetricsSink;
  /** The kernel reached the abuse limit; called once per sandbox. */
  onAbuse: (detail: string) => void;
}

/** One kernel's gate: decodes what its sandbox sends, counts what it refuses. */
export class InboundGate {
  readonly limits: InboundLimits;
  readonly #decode: ZmqLimits;
  #violations = 0;
  #total = 0;
  #last: { code: string; at: string } | undefined;
  #abused = false;

  constructor(
    limits: InboundLimits,
    private readonly deps: InboundGateDeps,
  ) {
    this.limits = limits;
    this.#decode = decodeLimits(limits);
  }

  /** Violations of the current sandbox. */
  get violations(): number {
    return this.#violations;
  }

  /** What health reports: violations of this sandbox, of every sandbox the kernel had, the last one. */
  report(): { violations: number; violations_total: number; last?: { code: string; at: string } } {
    return {
      violations: this.#violations,
      violations_total: this.#total,
      ...(this.#last ? { last: this.#last } : {}),
    };
  }

  /** A new sandbox starts with a clean record (a restart is a fresh container). */
  reset(): void {
    this.#violations = 0;
    this.#abused = false;
  }

  /** Decodes one message from the sandbox, or drops and counts it (`undefined`). */
  decode(frames: readonly Buffer[], channel: Channel, signer: Signer): RawMessage | undefined {
    try {
      return decodeZmq(frames, channel, signer, this.#decode).raw;
    } catch (err) {
      const code = err instanceof ProtocolError ? err.code : 'MALFORMED_FRAME';
      this.violation(code, err instanceof Error ? err.message : String(err), { channel });
      return undefined;
    }
  }

  /** Records one violation: a log line (rate-limited), the metric, and the kill past the limit. */
  violation(code: string, detail: string, fields: Record<string, unknown> = {}): void {
    this.#violations++;
    this.#total++;
    this.#last = { code, at: new Date().toISOString() };
    this.deps.metrics?.protocolViolation(code);
    this.deps.warn(
      { ...fields, code, detail, violations: this.#violations },
      'protocol violation by the kernel: message dropped',
    );
    if (this.limits.abuseLimit > 0 && this.#violations >= this.limits.abuseLimit && !this.#abused) {
      this.#abused = true;
      this.deps.onAbuse(`${this.#violations} protocol violations (last: ${code}: ${detail})`);
    }
  }
}
