/**
 * Message authentication: the HMAC-SHA256 signature over the four serialised JSON parts, checked in
 * constant time, and the replay guard that refuses a signature seen before.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 * @packageDocumentation
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The only signature scheme accepted: the one every Jupyter kernel implements.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/kernels.html#connection-files
 */
export const SIGNATURE_SCHEME = 'hmac-sha256';

/**
 * Signs and verifies messages with the kernel's connection-file key.
 *
 * With an empty key, signing yields `''` and verification accepts anything, exactly as
 * jupyter_client's `Session` does; the gateway always generates a key, so that mode exists only
 * for talking to peers started without one.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 * @see https://jupyter-client.readthedocs.io/en/latest/kernels.html#connection-files
 */
export class Signer {
  readonly #key: Buffer;

  /**
   * @param key - the `key` of the connection file (a string is taken as UTF-8, as jupyter_client
   *   does). The bytes are copied, so later changes to a Buffer argument have no effect.
   * @param scheme - the connection file's `signature_scheme`; only `hmac-sha256`.
   * @throws TypeError for any other scheme (a configuration error, not bad input).
   */
  constructor(key: string | Buffer, scheme: string = SIGNATURE_SCHEME) {
    if (scheme !== SIGNATURE_SCHEME) {
      throw new TypeError(
        `unsupported signature scheme ${JSON.stringify(scheme)}; only ${SIGNATURE_SCHEME} is supported`,
      );
    }
    this.#key = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key);
  }

  /** False when the key is empty and messages are neither signed nor checked. */
  get enabled(): boolean {
    return this.#key.length > 0;
  }

  /**
   * The signature of a message: lowercase hex HMAC-SHA256 over the parts, in order. Pass exactly
   * header, parent_header, metadata and content as serialised; buffers are never signed.
   *
   * @param parts - the serialised JSON parts.
   * @returns 64 lowercase hex digits, or `''` when the key is empty.
   */
  sign(parts: readonly Buffer[]): string {
    if (!this.enabled) return '';
    const hmac = createHmac('sha256', this.#key);
    for (const part of parts) hmac.update(part);
    return hmac.digest('hex');
  }

  /**
   * Checks a received signature against the parts, in constant time for signatures of the right
   * length. The comparison is byte-exact: an upper-case hex digest does not match, as in
   * jupyter_client.
   *
   * @param parts - the serialised JSON parts, as received.
   * @param signature - the signature frame, as text or as its bytes.
   * @returns true if it matches (always true when the key is empty).
   */
  verify(parts: readonly Buffer[], signature: string | Buffer): boolean {
    if (!this.enabled) return true;
    const expected = Buffer.from(this.sign(parts), 'latin1');
    const got = typeof signature === 'string' ? Buffer.from(signature, 'utf8') : signature;
    // timingSafeEqual throws on unequal lengths; the length of a valid digest is public anyway.
    return got.length === expected.length && timingSafeEqual(got, expected);
  }
}

/**
 * Remembers recent signatures and reports repeats, so a captured message cannot be replayed. Holds
 * at most `capacity` signatures; when full, the oldest is forgotten first (FIFO). jupyter_client
 * keeps 2^16 and culls at random; FIFO makes the window predictable.
 *
 * Record only signatures that verified, or forged messages could flush real ones out.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 */
export class ReplayGuard {
  readonly #seen = new Set<string>();
  readonly #order: (string | undefined)[];
  #next = 0;

  /**
   * @param capacity - how many signatures to remember (a positive integer).
   * @throws RangeError for a capacity that is not a positive integer.
   */
  constructor(readonly capacity = 65536) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`ReplayGuard capacity must be a positive integer, got ${capacity}`);
    }
    this.#order = new Array<string | undefined>(capacity);
  }

  /** How many signatures are remembered now. */
  get size(): number {
    return this.#seen.size;
  }

  /**
   * Checks a signature and remembers it.
   *
   * @param signature - a verified signature.
   * @returns true if it was already remembered (a replay); false if it is new, and now remembered.
   */
  seen(signature: string): boolean {
    if (this.#seen.has(signature)) return true;
    const evicted = this.#order[this.#next];
    if (evicted !== undefined) this.#seen.delete(evicted);
    this.#order[this.#next] = signature;
    this.#next = (this.#next + 1) % this.capacity;
    this.#seen.add(signature);
    return false;
  }
}
