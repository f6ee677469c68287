/**
 * The four message channels of a Jupyter kernel. The heartbeat channel carries raw bytes, not
 * Jupyter messages, so it is not one of them.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#introduction
 * @packageDocumentation
 */

/**
 * A channel that carries Jupyter messages: `shell` and `control` (requests and replies), `iopub`
 * (the kernel's broadcasts) and `stdin` (the kernel asking the client for input).
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#introduction
 */
export type Channel = 'shell' | 'control' | 'iopub' | 'stdin';

/**
 * Every {@link Channel}, in the order the spec introduces them.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#introduction
 */
export const CHANNELS: readonly Channel[] = Object.freeze(['shell', 'iopub', 'stdin', 'control']);

/**
 * Narrows an untrusted string (from a WebSocket frame) to a {@link Channel}.
 *
 * @param x - the channel name as received.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#introduction
 */
export function isChannel(x: string): x is Channel {
  return x === 'shell' || x === 'control' || x === 'iopub' || x === 'stdin';
}
