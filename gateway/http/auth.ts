/** Token authentication and WebSocket origin checks. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Constant-time token comparison (digests first, so the length does not leak either). */
export function tokenMatches(given: string, expected: string): boolean {
  return expected.length > 0 && timingSafeEqual(digest(given), digest(expected));
}

/** The token from `Authorization: token <T>` or `Authorization: Bearer <T>` (scheme case-insensitive). */
export function tokenFromHeader(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^(token|bearer)\s+(\S+)\s*$/i.exec(header);
  return m?.[2];
}

/** Whether a request carries the right token in its header or (when allowed) its `?token=` query. */
export function isAuthorized(
  req: IncomingMessage,
  url: URL,
  expected: string,
  allowQuery: boolean,
): boolean {
  const fromHeader = tokenFromHeader(req.headers.authorization);
  if (fromHeader !== undefined && tokenMatches(fromHeader, expected)) return true;
  if (allowQuery) {
    const q = url.searchParams.get('token');
    if (q !== null && tokenMatches(q, expected)) return true;
  }
  return false;
}

/**
 * Cross-site WebSocket hijacking guard: a request with an Origin header must come from the same
 * host or from an allow-listed origin (`*` allows any). Non-browser clients send no Origin.
 */
export function originAllowed(req: IncomingMessage, allowOrigin: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (allowOrigin.includes('*') || allowOrigin.includes(origin)) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}
