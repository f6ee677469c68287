/**
 * JSON parts as bytes: parsing one into a plain object with typed errors, and checking that a byte
 * string is exactly one JSON object without building it (for splicing kernel bytes into a legacy
 * WebSocket frame).
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#the-wire-protocol
 * @packageDocumentation
 */
import { ProtocolError } from './errors.js';

/**
 * True for a JSON object value (not an array, not null).
 *
 * @param v - a value produced by `JSON.parse`.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#general-message-format
 */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses UTF-8 JSON bytes that must hold an object. Invalid UTF-8 is replaced with U+FFFD, as
 * jupyter_client's unpacker does.
 *
 * @param bytes - the JSON part.
 * @param what - the part's name, for the error message (`content`, `metadata`, …).
 * @throws {@link ProtocolError} `BAD_JSON` if the bytes do not parse or are not an object.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#general-message-format
 */
export function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  const value = parseJson(bytes, what);
  if (!isJsonObject(value)) {
    throw new ProtocolError('BAD_JSON', `${what} must be a JSON object`);
  }
  return value;
}

/**
 * Parses UTF-8 JSON bytes or text into any JSON value.
 *
 * @param data - the JSON bytes or text.
 * @param what - the part's name, for the error message.
 * @throws {@link ProtocolError} `BAD_JSON` if it does not parse.
 *
 * @see https://jupyter-client.readthedocs.io/en/latest/messaging.html#general-message-format
 */
export function parseJson(data: Buffer | string, what: string): unknown {
  try {
    return JSON.parse(typeof data === 'string' ? data : data.toString('utf8')) as unknown;
  } catch (err) {
    throw new ProtocolError('BAD_JSON', `${what} is not valid JSON`, { cause: err });
  }
}

// Byte values the scanner dispatches on.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function isDigit(b: number | undefined): boolean {
  return b !== undefined && b >= ZERO && b <= NINE;
}

function isHex(b: number | undefined): boolean {
  return (
    b !== undefined &&
    ((b >= ZERO && b <= NINE) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66))
  );
}

const LITERALS: readonly (readonly number[])[] = [
  [...Buffer.from('true')],
  [...Buffer.from('false')],
  [...Buffer.from('null')],
];

/**
 * Checks, without building any objects, that `bytes` is exactly one JSON object (surrounding
 * whitespace allowed), with the grammar of RFC 8259 as `JSON.parse` applies it. Bytes ≥ 0x80 are
 * only accepted inside strings, so a part that passes cannot change the structure of a document it
 * is spliced into, whatever its UTF-8 validity.
 *
 * Why: kernel output is forwarded to legacy clients by splicing the kernel's JSON bytes into one
 * JSON text. The kernel runs untrusted code that holds the signing key, so without this check a
 * `content` of `{}, "header": {…}` would forge fields of the spliced message.
 *
 * @param bytes - the candidate JSON object.
 * @returns true if the bytes are one well-formed JSON object.
 *
 * @see https://jupyter-server.readthedocs.io/en/latest/developers/websocket-protocols.html
 */
export function isJsonObjectBytes(bytes: Uint8Array): boolean {
  const n = bytes.length;
  let i = 0;
  while (i < n && isSpace(bytes[i] ?? 0)) i++;
  if (bytes[i] !== OPEN_BRACE) return false;

  // stack[d] is true when depth d is an object, false for an array. `expect` says what may come next.
  const stack: boolean[] = [];
  type Expect = 'value' | 'key' | 'keyOrClose' | 'valueOrClose' | 'colon' | 'commaOrClose';
  let expect: Expect = 'value';

  while (i < n) {
    const b = bytes[i] ?? 0;
    if (isSpace(b)) {
      i++;
      continue;
    }
    switch (expect) {
      case 'colon':
        if (b !== COLON) return false;
        i++;
        expect = 'value';
        continue;
      case 'commaOrClose': {
        const inObject = stack[stack.length - 1];
        if (b === COMMA) {
          i++;
          expect = inObject === true ? 'key' : 'value';
          continue;
        }
        if (
          (inObject === true && b === CLOSE_BRACE) ||
          (inObject === false && b === CLOSE_BRACKET)
        ) {
          i++;
          stack.pop();
          if (stack.length === 0) return trailingSpaceOnly(bytes, i);
          continue;
        }
        return false;
      }
      case 'key':
      case 'keyOrClose':
        if (b === CLOSE_BRACE && expect === 'keyOrClose') {
          i++;
          stack.pop();
          if (stack.length === 0) return trailingSpaceOnly(bytes, i);
          expect = 'commaOrClose';
          continue;
        }
        if (b !== QUOTE) return false;
        i = skipString(bytes, i);
        if (i < 0) return false;
        expect = 'colon';
        continue;
      case 'value':
      case 'valueOrClose':
        if (b === CLOSE_BRACKET && expect === 'valueOrClose') {
          i++;
          stack.pop();
          if (stack.length === 0) return trailingSpaceOnly(bytes, i);
          expect = 'commaOrClose';
          continue;
        }
        if (b === OPEN_BRACE) {
          stack.push(true);
          i++;
          expect = 'keyOrClose';
          continue;
        }
        if (b === OPEN_BRACKET) {
          stack.push(false);
          i++;
          expect = 'valueOrClose';
          continue;
        }
        if (b === QUOTE) i = skipString(bytes, i);
        else if (b === MINUS || isDigit(b)) i = skipNumber(bytes, i);
        else i = skipLiteral(bytes, i);
        if (i < 0) return false;
        expect = 'commaOrClose';
        continue;
    }
  }
  return false;
}

function trailingSpaceOnly(bytes: Uint8Array, from: number): boolean {
  for (let i = from; i < bytes.length; i++) {
    if (!isSpace(bytes[i] ?? 0)) return false;
  }
  return true;
}

/** Returns the index after the closing quote of the string opening at `start`, or -1. */
function skipString(bytes: Uint8Array, start: number): number {
  const n = bytes.length;
  let i = start + 1;
  while (i < n) {
    const b = bytes[i] ?? 0;
    if (b === QUOTE) return i + 1;
    if (b < 0x20) return -1;
    if (b === BACKSLASH) {
      const e = bytes[i + 1];
      if (e === 0x75 /* u */) {
        if (!(
          isHex(bytes[i + 2]) &&
          isHex(bytes[i + 3]) &&
          isHex(bytes[i + 4]) &&
          isHex(bytes[i + 5])
        )) {
          return -1;
        }
        i += 6;
        continue;
      }
      // " \ / b f n r t
      if (
        e === QUOTE ||
        e === BACKSLASH ||
        e === 0x2f ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      ) {
        i += 2;
        continue;
      }
      return -1;
    }
    i++;
  }
  return -1;
}

/** Returns the index after the number starting at `start`, or -1. */
function skipNumber(bytes: Uint8Array, start: number): number {
  let i = start;
  if (bytes[i] === MINUS) i++;
  if (bytes[i] === ZERO) {
    i++;
  } else if (isDigit(bytes[i])) {
    while (isDigit(bytes[i])) i++;
  } else {
    return -1;
  }
  if (bytes[i] === DOT) {
    i++;
    if (!isDigit(bytes[i])) return -1;
    while (isDigit(bytes[i])) i++;
  }
  if (bytes[i] === 0x65 || bytes[i] === 0x45 /* e E */) {
    i++;
    if (bytes[i] === PLUS || bytes[i] === MINUS) i++;
    if (!isDigit(bytes[i])) return -1;
    while (isDigit(bytes[i])) i++;
  }
  return i;
}

/** Returns the index after `true`, `false` or `null` at `start`, or -1. */
function skipLiteral(bytes: Uint8Array, start: number): number {
  for (const lit of LITERALS) {
    if (lit.every((c, k) => bytes[start + k] === c)) return start + lit.length;
  }
  return -1;
}
