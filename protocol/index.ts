/**
 * and WebSocket framings. Nothing here does I/O.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html
 * @packageDocumentation
 */
export * from './errors.js';
export * from './messages.js';
export * from './json-bytes.js';
