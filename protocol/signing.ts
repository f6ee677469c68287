/**
 * Message authentication: the HMAC-SHA256 signature over the four serialised JSON parts, checked in
 * constant time.
 *
 * There is no replay guard (jupyter_client's digest history). The gateway verifies signatures only
 * on what sandboxes send, over ipc sockets in the kernel's own directory; the one peer there holds
 * the key and can sign anything new, so refusing repeats would stop nothing it cannot do anyway,
 * at up to 64 Ki remembered signatures (several MiB) per kernel. WebSocket clients do not sign.
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
