/**
 * The offset tables of the binary WebSocket framings (legacy: u32 big-endian; v1: u64
 * little-endian), read with every bound checked in one place.
 *
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
import { ProtocolError } from './errors.js';

/**
 * Reads `count` offsets with `readAt(i)` and checks them: the first is `tableEnd` (the end of the
 * table), each is at least the one before it, and none lies past `frameLength`.
 *
 * @throws ProtocolError `MALFORMED_FRAME` on the first offset that breaks a rule.
 */
export function readOffsets(
  count: number,
  readAt: (i: number) => number,
  tableEnd: number,
  frameLength: number,
): number[] {
  const offsets: number[] = [];
  let prev = tableEnd;
  for (let i = 0; i < count; i++) {
    const o = readAt(i);
    if (i === 0 && o !== tableEnd) {
      throw new ProtocolError(
        'MALFORMED_FRAME',
        `first offset must be ${tableEnd} (the end of the offset table), got ${o}`,
      );
    }
    if (o < prev || o > frameLength) {
      throw new ProtocolError(
        'MALFORMED_FRAME',
        `offset ${i} (${o}) is out of order or past the end of the ${frameLength}-byte frame`,
      );
    }
    offsets.push(o);
    prev = o;
  }
  return offsets;
}
