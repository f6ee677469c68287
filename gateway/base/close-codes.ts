/**
 * The WebSocket close codes the gateway sends (RFC 6455 section 7.4.1), by what each means here.
 * Every `close(code, …)` names one of these instead of a number.
 */
export const CloseCode = {
  /** Done: an agent execution finished, or a newer connection with the same session_id took over. */
  NORMAL: 1000,
  /** The other end is going away: the gateway or the kernel shut down, a client session evicted. */
  GOING_AWAY: 1001,
  /** A client frame the protocol cannot decode (malformed JSON or v1 framing). */
  INVALID_DATA: 1007,
  /** A policy breach: a client that stopped reading and whose unsent data passed the cap. */
  POLICY: 1008,
  /** A client message larger than AIDO_MAX_FRAME (sent by the ws library itself). */
  TOO_BIG: 1009,
  /** The connection's client session has already closed: nothing to attach to. */
  INTERNAL_ERROR: 1011,
  /** No room for another client session now; one frees up when a disconnected one expires. */
  TRY_AGAIN_LATER: 1013,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];
