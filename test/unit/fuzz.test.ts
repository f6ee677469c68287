/**
 * Fuzzing the decoders of untrusted bytes: the two WebSocket framings (v1; legacy text and binary)
 * and the ZeroMQ multipart parser with a signer. On random bytes and on valid frames mutated in
 * many ways (bytes flipped, truncated, extended, spliced, offset tables corrupted, ZMQ frames
 * dropped, duplicated, swapped, re-signed), a decoder either returns a message whose every part
 * lies inside the input, or throws a `ProtocolError` carrying one of the documented codes. Nothing
 * else may escape: a `RangeError` from reading past a buffer, a `TypeError`, a hang.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import {
  CHANNELS,
  DELIMITER,
  PROTOCOL_ERROR_CODES,
  ProtocolError,
  Signer,
  decodeLegacy,
  decodeV1,
  decodeZmq,
  encodeLegacy,
  encodeV1,
  encodeZmq,
  fromRaw,
  toRaw,
  type JupyterMessage,
  type RawMessage,
} from '../../protocol/index.js';
import { messageArb, textMessageArb } from './protocol/arbitraries.js';

/** Runs per property: enough to reach the deep branches, few enough to finish in seconds. */
const RUNS = 2500;
const KEY = 'fuzz-key-0123456789abcdef';
const signer = new Signer(KEY);

/**
 * Calls `decode`; when it throws, the error must be a ProtocolError with a documented code.
 * Returns the result, or undefined for a (correctly) refused input.
 */
function decodeOrRefuse<T>(decode: () => T): T | undefined {
  try {
    return decode();
  } catch (err) {
    expect(err, `a ${(err as Error).name}: ${(err as Error).message}`).to.be.instanceOf(
      ProtocolError,
    );
    expect(PROTOCOL_ERROR_CODES).to.include((err as ProtocolError).code);
    return undefined;
  }
}

/** Whether `part` is a view of `frame`'s bytes that lies wholly inside it. */
function within(part: Buffer, frame: Buffer): boolean {
  return (
    part.buffer === frame.buffer &&
    part.byteOffset >= frame.byteOffset &&
    part.byteOffset + part.length <= frame.byteOffset + frame.length
  );
}

/** A decoded message must be one the rest of the gateway can route. */
function expectRoutable(header: { msg_id: unknown; msg_type: unknown }, channel: string): void {
  expect(header.msg_id).to.be.a('string').and.not.equal('');
  expect(header.msg_type).to.be.a('string').and.not.equal('');
  expect(CHANNELS).to.include(channel);
}

// ---- byte-level mutations ------------------------------------------------------------------

/** Values that break offset arithmetic: zero, the frame's edges, the u32 and 2^53 boundaries. */
const nastyOffset = fc.oneof(
  fc.constantFrom(0, 1, 7, 8, 0x7fffffff, 0xffffffff, 2 ** 32, 2 ** 53 - 1, 2 ** 53),
  fc.nat(),
);

type ByteMutation =
  | { kind: 'flip'; at: number; mask: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'extend'; bytes: Uint8Array }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'offset'; slot: number; value: number; relative: 'absolute' | 'length' | 'minus1' };

const byteMutationArb: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({
    kind: fc.constant('flip' as const),
    at: fc.nat(),
    mask: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('extend' as const),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }),
  }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 16 }),
  }),
  fc.record({
    kind: fc.constant('offset' as const),
    slot: fc.nat(16),
    value: nastyOffset,
    relative: fc.constantFrom('absolute' as const, 'length' as const, 'minus1' as const),
  }),
);

/** 1–4 mutations applied in turn. */
const mutationsArb = fc.array(byteMutationArb, { minLength: 1, maxLength: 4 });

/** How a framing lays out its offset table: slot width and byte order. */
interface OffsetLayout {
  width: 4 | 8;
  read(buf: Buffer, at: number): number;
  write(buf: Buffer, at: number, value: number): void;
}

const V1_LAYOUT: OffsetLayout = {
  width: 8,
  read: (buf, at) => Number(buf.readBigUInt64LE(at)),
  write: (buf, at, value) => {
    buf.writeBigUInt64LE(BigInt(Math.max(0, Math.min(value, Number.MAX_SAFE_INTEGER))), at);
  },
};

const LEGACY_LAYOUT: OffsetLayout = {
  width: 4,
  read: (buf, at) => buf.readUInt32BE(at),
  write: (buf, at, value) => {
    buf.writeUInt32BE(Math.max(0, Math.min(value, 0xffffffff)) >>> 0, at);
  },
};

/** Applies mutations to a copy of `frame`; `layout` lets `offset` mutations hit the table. */
function mutateBytes(
  frame: Buffer,
  mutations: readonly ByteMutation[],
  layout: OffsetLayout,
): Buffer {
  let buf = Buffer.from(frame);
  for (const m of mutations) {
    switch (m.kind) {
      case 'flip':
        if (buf.length > 0) buf[m.at % buf.length] = (buf[m.at % buf.length] ?? 0) ^ m.mask;
        break;
      case 'truncate':
        buf = buf.subarray(0, m.at % (buf.length + 1));
        break;
      case 'extend':
        buf = Buffer.concat([buf, m.bytes]);
        break;
      case 'insert': {
        const at = m.at % (buf.length + 1);
        buf = Buffer.concat([buf.subarray(0, at), m.bytes, buf.subarray(at)]);
        break;
      }
      case 'delete': {
        const at = m.at % (buf.length + 1);
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + m.length)]);
        break;
      }
      case 'offset': {
        // Slot 0 is the count, slot k ≥ 1 the k-th offset.
        const at = m.slot * layout.width;
        if (at + layout.width > buf.length) break;
        const value =
          m.relative === 'absolute'
            ? m.value
            : m.relative === 'length'
              ? buf.length + (m.value % 3) - 1
              : layout.read(buf, at) - 1;
        layout.write(buf, at, value);
        break;
      }
    }
  }
  // A fresh, exactly-sized allocation: reads past the end must fail, not see pool bytes.
  return Buffer.from(buf);
}

// ---- v1 ------------------------------------------------------------------------------------

/** Checks one frame; true when it decoded (the properties count these: refusing all is a bug too). */
function checkV1(frame: Buffer): boolean {
  const raw = decodeOrRefuse(() => decodeV1(frame));
  if (!raw) return false;
  expectRoutable(raw.header, raw.channel);
  for (const part of [raw.headerBytes, raw.parentHeader, raw.metadata, raw.content, ...raw.buffers])
    expect(within(part, frame), 'every part is a view inside the frame').to.equal(true);
  // The layout is canonical: whatever decodes re-encodes to the very same bytes.
  expect(encodeV1(raw).equals(frame), 're-encodes byte for byte').to.equal(true);
  // Parsing the other JSON parts (as a client does) fails only with a ProtocolError too.
  decodeOrRefuse(() => fromRaw(raw));
  return true;
}

// ---- legacy ---------------------------------------------------------------------------------

function checkLegacy(data: Buffer | string, isBinary: boolean): boolean {
  const msg = decodeOrRefuse(() => decodeLegacy(data, isBinary));
  if (!msg) return false;
  expectRoutable(msg.header, msg.channel);
  if (!isBinary) {
    expect(msg.buffers).to.deep.equal([]);
  } else {
    const frame = data as Buffer;
    expect(msg.buffers.length).to.be.at.least(1);
    for (const b of msg.buffers)
      expect(within(b, frame), 'every buffer is a view inside the frame').to.equal(true);
  }
  // What the gateway does next with a decoded client frame.
  toRaw(msg);
  return true;
}

/** A legacy binary frame: a message with at least one buffer. */
const binaryMessageArb: fc.Arbitrary<JupyterMessage> = fc
  .tuple(messageArb, fc.uint8Array({ maxLength: 16 }))
  .map(([m, extra]) => ({ ...m, buffers: [...m.buffers, Buffer.from(extra)] }));

// ---- ZeroMQ -----------------------------------------------------------------------------------

type FrameMutation =
  | { kind: 'drop'; at: number }
  | { kind: 'duplicate'; at: number }
  | { kind: 'swap'; a: number; b: number }
  | { kind: 'insert'; at: number; frame: Uint8Array | 'delimiter' }
  | { kind: 'bytes'; at: number; mutations: ByteMutation[] }
  | { kind: 'signature'; value: string };

const frameMutationArb: fc.Arbitrary<FrameMutation> = fc.oneof(
  fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('swap' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    frame: fc.oneof(fc.uint8Array({ maxLength: 24 }), fc.constant('delimiter' as const)),
  }),
  fc.record({ kind: fc.constant('bytes' as const), at: fc.nat(), mutations: mutationsArb }),
  fc.record({
    kind: fc.constant('signature' as const),
    value: fc.oneof(
      fc.constant(''),
      fc.stringMatching(/^[0-9a-f]{64}$/),
      fc.stringMatching(/^[0-9A-F]{64}$/),
      fc.string({ maxLength: 80 }),
    ),
  }),
);

/** Applies frame-level mutations to a copy of the multipart message. */
function mutateFrames(frames: readonly Buffer[], mutations: readonly FrameMutation[]): Buffer[] {
  const out: Buffer[] = frames.map((f) => Buffer.from(f));
  for (const m of mutations) {
    const n = out.length;
    switch (m.kind) {
      case 'drop':
        if (n > 0) out.splice(m.at % n, 1);
        break;
      case 'duplicate':
        if (n > 0) out.splice(m.at % n, 0, Buffer.from(out[m.at % n] ?? Buffer.alloc(0)));
        break;
      case 'swap':
        if (n > 1) {
          const a = out[m.a % n] ?? Buffer.alloc(0);
          out[m.a % n] = out[m.b % n] ?? Buffer.alloc(0);
          out[m.b % n] = a;
        }
        break;
      case 'insert':
        out.splice(
          m.at % (n + 1),
          0,
          m.frame === 'delimiter' ? Buffer.from(DELIMITER) : Buffer.from(m.frame),
        );
        break;
      case 'bytes':
        if (n > 0)
          out[m.at % n] = mutateBytes(out[m.at % n] ?? Buffer.alloc(0), m.mutations, V1_LAYOUT);
        break;
      case 'signature': {
        const d = out.findIndex((f) => f.equals(DELIMITER));
        if (d >= 0 && d + 1 < n) out[d + 1] = Buffer.from(m.value, 'latin1');
        break;
      }
    }
  }
  return out;
}

function signedParts(raw: RawMessage): Buffer[] {
  return [raw.headerBytes, raw.parentHeader, raw.metadata, raw.content];
}

describe('fuzz: decoders of untrusted bytes', function () {
  // Thousands of runs per property; generous for a loaded machine, still bounded.
  this.timeout(120_000);

  describe('decodeV1 (v1.kernel.websocket.jupyter.org)', () => {
    it('random bytes: a ProtocolError with a code, never anything else', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
          checkV1(Buffer.from(bytes));
        }),
        { numRuns: RUNS },
      );
    });

    it('random bytes behind a plausible offset count (6–12)', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 6, max: 12 }),
          fc.array(fc.integer({ min: 0, max: 600 }), { maxLength: 12 }),
          fc.uint8Array({ maxLength: 300 }),
          (count, offsets, tail) => {
            const table = Buffer.alloc(8 * (1 + offsets.length));
            table.writeBigUInt64LE(BigInt(count), 0);
            offsets.forEach((o, i) => table.writeBigUInt64LE(BigInt(o), 8 * (i + 1)));
            checkV1(Buffer.concat([table, tail]));
          },
        ),
        { numRuns: RUNS },
      );
    });

    it('mutated valid frames (flip, truncate, extend, splice, corrupt offsets)', () => {
      let decoded = 0;
      fc.assert(
        fc.property(messageArb, mutationsArb, (msg, mutations) => {
          if (checkV1(mutateBytes(encodeV1(toRaw(msg)), mutations, V1_LAYOUT))) decoded++;
        }),
        { numRuns: RUNS },
      );
      // Mutations inside JSON strings or buffers keep a frame valid: a decoder that refused
      // everything would pass the property above.
      expect(decoded, 'some mutated frames still decode').to.be.greaterThan(0);
    });

    it('limits hold on mutated frames: a frame over maxBytes or maxBuffers never decodes', () => {
      fc.assert(
        fc.property(
          messageArb,
          mutationsArb,
          fc.nat(400),
          fc.nat(4),
          (msg, mutations, maxBytes, maxBuffers) => {
            const frame = mutateBytes(encodeV1(toRaw(msg)), mutations, V1_LAYOUT);
            const raw = decodeOrRefuse(() => decodeV1(frame, { maxBytes, maxBuffers }));
            if (raw) {
              expect(frame.length).to.be.at.most(maxBytes);
              expect(raw.buffers.length).to.be.at.most(maxBuffers);
            }
          },
        ),
        { numRuns: RUNS },
      );
    });
  });

  describe('decodeLegacy (no subprotocol)', () => {
    it('random text, as a string and as UTF-8 bytes', () => {
      fc.assert(
        fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
          checkLegacy(text, false);
          checkLegacy(Buffer.from(text, 'utf8'), false);
        }),
        { numRuns: RUNS },
      );
    });

    it('random JSON values and near-messages as text', () => {
      let decoded = 0;
      // Mostly well-typed fields, so that a fair share are messages and the rest fail late.
      const field = fc.oneof(
        { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 8 }) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) },
      );
      const object = fc.oneof(
        { weight: 3, arbitrary: fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 1 })) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
      );
      const nearMessage = fc.record(
        {
          channel: fc.oneof(fc.constantFrom(...CHANNELS, null), fc.jsonValue({ maxDepth: 1 })),
          header: fc.oneof(
            {
              weight: 4,
              arbitrary: fc.record(
                {
                  msg_id: field,
                  msg_type: field,
                  session: field,
                  username: field,
                  date: field,
                  version: field,
                  subshell_id: fc.oneof(field, fc.constant(null)),
                },
                { requiredKeys: ['msg_id', 'msg_type', 'session', 'username', 'date', 'version'] },
              ),
            },
            { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
          ),
          parent_header: fc.oneof(fc.constant({}), object),
          metadata: object,
          content: object,
          buffers: fc.jsonValue({ maxDepth: 1 }),
          msg_id: fc.jsonValue({ maxDepth: 1 }),
        },
        { requiredKeys: ['header'] },
      );
      fc.assert(
        fc.property(fc.oneof(fc.jsonValue({ maxDepth: 3 }), nearMessage), (value) => {
          if (checkLegacy(JSON.stringify(value), false)) decoded++;
        }),
        { numRuns: RUNS },
      );
      expect(decoded, 'some near-messages are messages').to.be.greaterThan(0);
    });

    it('mutated valid text frames', () => {
      let decoded = 0;
      fc.assert(
        fc.property(textMessageArb, mutationsArb, (msg, mutations) => {
          const { data } = encodeLegacy(msg);
          const frame = mutateBytes(Buffer.from(data as string, 'utf8'), mutations, LEGACY_LAYOUT);
          const fromBytes = checkLegacy(frame, false);
          expect(checkLegacy(frame.toString('utf8'), false)).to.equal(fromBytes);
          if (fromBytes) decoded++;
        }),
        { numRuns: RUNS },
      );
      expect(decoded, 'some mutated frames still decode').to.be.greaterThan(0);
    });

    it('random bytes as a binary frame', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
          checkLegacy(Buffer.from(bytes), true);
        }),
        { numRuns: RUNS },
      );
    });

    it('mutated valid binary frames (flip, truncate, extend, splice, corrupt offsets)', () => {
      let decoded = 0;
      fc.assert(
        fc.property(binaryMessageArb, mutationsArb, (msg, mutations) => {
          const { data, binary } = encodeLegacy(msg);
          expect(binary).to.equal(true);
          if (checkLegacy(mutateBytes(data as Buffer, mutations, LEGACY_LAYOUT), true)) decoded++;
        }),
        { numRuns: RUNS },
      );
      expect(decoded, 'some mutated frames still decode').to.be.greaterThan(0);
    });

    it('a binary frame over maxBytes or maxBuffers never decodes', () => {
      fc.assert(
        fc.property(
          binaryMessageArb,
          mutationsArb,
          fc.nat(400),
          fc.nat(4),
          (msg, mutations, maxBytes, maxBuffers) => {
            const frame = mutateBytes(encodeLegacy(msg).data as Buffer, mutations, LEGACY_LAYOUT);
            const out = decodeOrRefuse(() => decodeLegacy(frame, true, { maxBytes, maxBuffers }));
            if (out) {
              expect(frame.length).to.be.at.most(maxBytes);
              expect(out.buffers.length).to.be.at.most(maxBuffers);
            }
          },
        ),
        { numRuns: RUNS },
      );
    });
  });

  describe('decodeZmq with a Signer', () => {
    it('random multipart messages (with and without a delimiter frame)', () => {
      const frameArb = fc.oneof(
        { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
        { weight: 1, arbitrary: fc.constant(Buffer.from(DELIMITER)) },
      );
      fc.assert(
        fc.property(fc.array(frameArb, { maxLength: 10 }), (frames) => {
          const out = decodeOrRefuse(() => decodeZmq(frames, 'shell', signer));
          // Random bytes never carry a valid HMAC.
          expect(out, 'nothing random authenticates').to.equal(undefined);
        }),
        { numRuns: RUNS },
      );
    });

    it('mutated signed messages: anything that decodes carries the signed bytes unchanged', () => {
      let decoded = 0;
      fc.assert(
        fc.property(
          messageArb,
          fc.array(fc.uint8Array({ maxLength: 12 }), { maxLength: 2 }),
          fc.array(frameMutationArb, { minLength: 1, maxLength: 4 }),
          (msg, identities, mutations) => {
            const raw = toRaw(msg);
            const frames = encodeZmq(
              raw,
              signer,
              identities.map((i) => Buffer.from(i)),
            );
            const mutated = mutateFrames(frames, mutations);
            const out = decodeOrRefuse(() => decodeZmq(mutated, raw.channel, signer));
            if (!out) return;
            expectRoutable(out.raw.header, out.raw.channel);
            // The HMAC covers the four JSON parts: no mutation of them may get through.
            expect(signedParts(out.raw)).to.deep.equal(signedParts(raw));
            decoded++;
          },
        ),
        { numRuns: RUNS },
      );
      // Identities and buffers are not signed: mutating only those still decodes.
      expect(decoded, 'some mutated messages still decode').to.be.greaterThan(0);
    });

    it('re-signed garbage (a kernel holds the key): parts parse or fail with a ProtocolError', () => {
      let decoded = 0;
      fc.assert(
        fc.property(
          messageArb,
          fc.array(fc.tuple(fc.nat(3), mutationsArb), { minLength: 1, maxLength: 3 }),
          (msg, edits) => {
            const raw = toRaw(msg);
            const parts = signedParts(raw);
            for (const [which, mutations] of edits)
              parts[which] = mutateBytes(parts[which] ?? Buffer.alloc(0), mutations, V1_LAYOUT);
            const [headerBytes, parentHeader, metadata, content] = parts as [
              Buffer,
              Buffer,
              Buffer,
              Buffer,
            ];
            const frames = encodeZmq(
              { headerBytes, parentHeader, metadata, content, buffers: raw.buffers },
              signer,
            );
            const out = decodeOrRefuse(() => decodeZmq(frames, 'iopub', signer));
            if (!out) return;
            expectRoutable(out.raw.header, out.raw.channel);
            decodeOrRefuse(() => fromRaw(out.raw));
            decoded++;
          },
        ),
        { numRuns: RUNS },
      );
      expect(decoded, 'some re-signed messages decode').to.be.greaterThan(0);
    });

    it('an unkeyed signer (no authentication): mutated frames still fail only with a ProtocolError', () => {
      const unkeyed = new Signer('');
      fc.assert(
        fc.property(
          messageArb,
          fc.array(frameMutationArb, { minLength: 1, maxLength: 4 }),
          fc.nat(20),
          (msg, mutations, maxFrames) => {
            const frames = mutateFrames(encodeZmq(toRaw(msg), unkeyed), mutations);
            const out = decodeOrRefuse(() => decodeZmq(frames, 'shell', unkeyed, { maxFrames }));
            if (out) {
              expectRoutable(out.raw.header, out.raw.channel);
              expect(frames.length).to.be.at.most(maxFrames);
            }
          },
        ),
        { numRuns: RUNS },
      );
    });
  });
});
