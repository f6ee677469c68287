/**
 * The gateway's one JSON error writer. Every REST error, whatever writes it (an Express route, the
 * bare HTTP server before Express, a refused WebSocket upgrade, an error event in a stream), is
 * `{reason, message}` with the status and Jupyter-style reason of its code (base/errors.ts); never a
 * traceback. Jupyter Server and Kernel Gateway answer the same shape, and clients read `message`.
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { httpStatusOf, type GatewayError } from '../base/errors.js';

export interface JsonErrorBody {
  reason: string;
  message: string;
  [extra: string]: unknown;
}

const CONTENT_TYPE = 'application/json; charset=utf-8';

/** The body of an error: `{reason, message}` and any extra fields (a conversation id, say). */
export function jsonErrorBody(
  err: GatewayError,
  extra: Record<string, unknown> = {},
): JsonErrorBody {
  return { reason: httpStatusOf(err.code).reason, message: err.message, ...extra };
}

/**
 * Answers a request with the error (an Express Response is a ServerResponse); headers set before
 * (CORS, the console's security headers) stay.
 */
export function sendJsonError(
  res: ServerResponse,
  err: GatewayError,
  extra: Record<string, unknown> = {},
): void {
  const body = JSON.stringify(jsonErrorBody(err, extra));
  res.statusCode = httpStatusOf(err.code).status;
  res.setHeader('Content-Type', CONTENT_TYPE);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/** Refuses an HTTP upgrade before any WebSocket exists: a whole HTTP response on the raw socket. */
export function refuseUpgrade(socket: Duplex, err: GatewayError): void {
  const { status, reason } = httpStatusOf(err.code);
  const body = JSON.stringify(jsonErrorBody(err));
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
