/**
 * The pure protocol layer of the gateway: the Jupyter message model, HMAC signing, and the ZeroMQ
 * and WebSocket framings. Nothing here does I/O.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html
 * @packageDocumentation
 */
export * from './errors.js';
export * from './messages.js';
export * from './json-bytes.js';
export * from './signing.js';
export * from './zmq-frames.js';
export * from './ws-legacy.js';
export * from './ws-v1.js';
export * from './ws-framing.js';
