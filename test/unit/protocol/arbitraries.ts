/**
 * fast-check generators of Jupyter messages for the protocol property tests, and the normalisation
 * that says what a round trip must preserve.
 */
import fc from 'fast-check';
import { CHANNELS, type Header, type JupyterMessage } from '../../../protocol/index.js';

/** Any Unicode text, lone surrogates included (JSON escapes them, so they survive). */
const text = fc.string({ unit: 'binary', maxLength: 24 });
const nonEmptyText = fc.string({ unit: 'binary', minLength: 1, maxLength: 24 });
const json = fc.jsonValue({ maxDepth: 2 });

export const headerArb: fc.Arbitrary<Header> = fc
  .record(
    {
      msg_id: nonEmptyText,
      session: text,
      username: text,
      date: fc
        .date({ min: new Date(0), max: new Date(4102444800000), noInvalidDate: true })
        .map((d) => d.toISOString()),
      msg_type: nonEmptyText,
      version: fc.constantFrom('5.0', '5.2', '5.3', '5.4', '5.5'),
      subshell_id: fc.option(text, { nil: null }),
    },
    { requiredKeys: ['msg_id', 'session', 'username', 'date', 'msg_type', 'version'] },
  )
  .map((h) => h as Header);

const objectArb = fc.dictionary(text, json, { maxKeys: 4 });

/** A message with 0–3 buffers. */
export const messageArb: fc.Arbitrary<JupyterMessage> = fc.record({
  channel: fc.constantFrom(...CHANNELS),
  header: headerArb,
  parent_header: fc.oneof(fc.constant({}), headerArb),
  metadata: objectArb,
  content: objectArb,
  buffers: fc.array(
    fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)),
    { maxLength: 3 },
  ),
});

/** A message without buffers (the legacy text form). */
export const textMessageArb: fc.Arbitrary<JupyterMessage> = messageArb.map((m) => ({
  ...m,
  buffers: [],
}));

/**
 * What a message must look like after any encode/decode: its JSON parts as JSON would carry them
 * (`-0` becomes `0`, `undefined` members vanish) and its buffers as plain byte arrays.
 */
export function normalise(msg: JupyterMessage): unknown {
  return {
    channel: msg.channel,
    header: JSON.parse(JSON.stringify(msg.header)) as unknown,
    parent_header: JSON.parse(JSON.stringify(msg.parent_header)) as unknown,
    metadata: JSON.parse(JSON.stringify(msg.metadata)) as unknown,
    content: JSON.parse(JSON.stringify(msg.content)) as unknown,
    buffers: msg.buffers.map((b) => [...b]),
  };
}

/** One in-place corruption of a frame: overwrite a byte, truncate, or append junk. */
export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('append' as const),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
);

/** Applies a {@link mutationArb} to a copy of `frame`. */
export function mutate(frame: Buffer, m: Mutation): Buffer {
  const copy = Buffer.from(frame);
  switch (m.kind) {
    case 'set':
      if (copy.length > 0) copy[m.at % copy.length] = m.value;
      return copy;
    case 'truncate':
      return copy.subarray(0, m.at % (copy.length + 1));
    case 'append':
      return Buffer.concat([copy, m.bytes]);
  }
}

export type Mutation =
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; bytes: Uint8Array };
