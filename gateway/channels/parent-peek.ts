/**
 * The routing fields of a kernel message's parent header, parsed at most once per message however
 * many parts of the gateway ask (the kernel session, each agent execution watching iopub), and only
 * up to a size: the inbound gate has already refused a parent_header over AIDO_KERNEL_MAX_HEADER,
 * and this module refuses to parse anything bigger than that cap on its own account too.
 */
import { isJsonObject } from '../../protocol/index.js';

/** The parent header fields the gateway routes on; absent when missing or not strings. */
export interface ParentPeek {
  msg_id?: string;
  msg_type?: string;
  session?: string;
}

/** Largest parent header this module parses (the default header limit is 64 KiB). */
const PEEK_MAX_BYTES = 1024 ** 2;

// Keyed by the part's Buffer, which every client of the kernel shares (iopub is fanned out).
const cache = new WeakMap<Buffer, ParentPeek>();

/** The routing fields of `parentHeader`; `{}` when it is empty, too big, or not a JSON object. */
export function peekParent(parentHeader: Buffer): ParentPeek {
  let peek = cache.get(parentHeader);
  if (peek === undefined) {
    peek = parse(parentHeader);
    cache.set(parentHeader, peek);
  }
  return peek;
}

function parse(bytes: Buffer): ParentPeek {
  if (bytes.length < 2) return {};
  const value = parseObjectOrEmpty(bytes, PEEK_MAX_BYTES);
  const peek: ParentPeek = {};
  for (const field of ['msg_id', 'msg_type', 'session'] as const) {
    const v = value[field];
    if (typeof v === 'string') peek[field] = v;
  }
  return peek;
}

/**
 * Parses a JSON object that policy needs (a status, a reply's status) only when it is at most
 * `maxBytes`; anything else, or anything that is not an object, is `{}` (unlike protocol's
 * parseJsonObject, which throws: a kernel's odd bytes must not stop routing).
 */
export function parseObjectOrEmpty(bytes: Buffer, maxBytes: number): Record<string, unknown> {
  if (bytes.length > maxBytes) return {};
  try {
    const v: unknown = JSON.parse(bytes.toString('utf8'));
    return isJsonObject(v) ? v : {};
  } catch {
    return {};
  }
}

/** The execution states a kernel's status message announces. */
const STATES = ['busy', 'idle', 'starting'] as const;

// The bytes jupyter_client's packer writes for each state (json.dumps: ", " and ": "), and the
// compact form other kernels write. A content equal to one of them needs no parse.
const KNOWN_STATUS = new Map<string, (typeof STATES)[number]>(
  STATES.flatMap((s) => [
    [`{"execution_state": "${s}"}`, s],
    [`{"execution_state":"${s}"}`, s],
  ]),
);
const KNOWN_MAX = Math.max(...[...KNOWN_STATUS.keys()].map((k) => k.length));

/**
 * The `execution_state` of a status message's content. The content of almost every status is one
 * of a handful of exact byte strings, recognised by comparing its bytes (no parse); anything else
 * (extra fields, other spacing) is parsed like any policy field, up to `maxBytes`. Undefined when
 * absent or not a string.
 */
export function peekExecutionState(content: Buffer, maxBytes: number): string | undefined {
  if (content.length <= KNOWN_MAX) {
    const known = KNOWN_STATUS.get(content.toString('latin1'));
    if (known !== undefined) return known;
  }
  const state = parseObjectOrEmpty(content, maxBytes).execution_state;
  return typeof state === 'string' ? state : undefined;
}
