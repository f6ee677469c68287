import { expect } from 'chai';
import fc from 'fast-check';
import {
  ProtocolError,
  V1_PROTOCOL,
  decodeV1,
  encodeV1,
  fromRaw,
  toRaw,
  type ProtocolErrorCode,
  type RawMessage,
} from '../../../protocol/index.js';
import { messageArb, mutate, mutationArb, normalise } from './arbitraries.js';

function expectCode(fn: () => unknown, code: ProtocolErrorCode): void {
  expect(fn).to.throw(ProtocolError).with.property('code', code);
}

const u64 = (...values: number[]): Buffer => {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), 8 * i));
  return b;
};

// The field notes' example (§3.5): channel shell, a 125-byte header, {} x3, one 3-byte buffer;
// 7 offsets 64, 69, 194, 196, 198, 200, 203.
const GOLDEN_HEADER =
  '{"msg_id":"m1","session":"s1","username":"xxxxxxxxx","date":"2024-01-01T00:00:00.000Z",' +
  '"msg_type":"comm_msg","version":"5.3"}';

const GOLDEN_FRAME = Buffer.concat([
  Buffer.from('0700000000000000', 'hex'),
  Buffer.from(
    '4000000000000000' +
      '4500000000000000' +
      'c200000000000000' +
      'c400000000000000' +
      'c600000000000000' +
      'c800000000000000' +
      'cb00000000000000',
    'hex',
  ),
  Buffer.from('shell'),
  Buffer.from(GOLDEN_HEADER),
  Buffer.from('{}{}{}'),
  Buffer.from([1, 2, 3]),
]);

function goldenRaw(): RawMessage {
  return {
    channel: 'shell',
    header: JSON.parse(GOLDEN_HEADER) as RawMessage['header'],
    headerBytes: Buffer.from(GOLDEN_HEADER),
    parentHeader: Buffer.from('{}'),
    metadata: Buffer.from('{}'),
    content: Buffer.from('{}'),
    buffers: [Buffer.from([1, 2, 3])],
  };
}

/** A v1 frame with the given offset table over the golden payload (for layout corruption). */
function withTable(count: number, offsets: number[], payload = GOLDEN_FRAME.subarray(64)): Buffer {
  return Buffer.concat([u64(count, ...offsets), payload]);
}

describe('protocol/ws-v1', () => {
  it('names the subprotocol', () => {
    expect(V1_PROTOCOL).to.equal('v1.kernel.websocket.jupyter.org');
  });

  describe('golden bytes', () => {
    it('the hand-built example has the documented lengths', () => {
      expect(Buffer.byteLength(GOLDEN_HEADER)).to.equal(125);
      expect(GOLDEN_FRAME.length).to.equal(203);
    });

    it('encodes the field-notes example byte for byte', () => {
      expect(encodeV1(goldenRaw()).toString('hex')).to.equal(GOLDEN_FRAME.toString('hex'));
    });

    it('decodes the field-notes example', () => {
      const raw = decodeV1(GOLDEN_FRAME);
      expect(raw.channel).to.equal('shell');
      expect(raw.header.msg_type).to.equal('comm_msg');
      expect(raw.headerBytes.toString()).to.equal(GOLDEN_HEADER);
      expect([raw.parentHeader, raw.metadata, raw.content].map(String)).to.deep.equal([
        '{}',
        '{}',
        '{}',
      ]);
      expect(raw.buffers.map((b) => [...b])).to.deep.equal([[1, 2, 3]]);
    });

    it('decodes parts as views into the frame, not copies', () => {
      const raw = decodeV1(GOLDEN_FRAME);
      for (const part of [
        raw.headerBytes,
        raw.parentHeader,
        raw.metadata,
        raw.content,
        ...raw.buffers,
      ]) {
        expect(part.buffer).to.equal(GOLDEN_FRAME.buffer);
      }
    });

    it('encodes without aliasing its inputs', () => {
      const raw = goldenRaw();
      const frame = encodeV1(raw);
      raw.headerBytes.fill(0x20);
      raw.buffers[0]?.fill(9);
      expect(frame.toString('hex')).to.equal(GOLDEN_FRAME.toString('hex'));
    });

    it('encodes a message without buffers with 6 offsets', () => {
      const frame = encodeV1({ ...goldenRaw(), buffers: [] });
      expect(frame.readBigUInt64LE(0)).to.equal(6n);
      expect(frame.readBigUInt64LE(8)).to.equal(56n);
      expect(Number(frame.readBigUInt64LE(48))).to.equal(frame.length);
      expect(decodeV1(frame).buffers).to.deep.equal([]);
    });
  });

  describe('refuses', () => {
    describe('bad layouts: MALFORMED_FRAME', () => {
      const cases: [string, Buffer][] = [
        ['empty', Buffer.alloc(0)],
        ['shorter than the count', Buffer.alloc(7)],
        ['count 0', u64(0)],
        ['count 5 (too few parts)', withTable(5, [48, 53, 178, 180, 182])],
        ['count 2^64-1', Buffer.concat([Buffer.alloc(8, 0xff), GOLDEN_FRAME.subarray(8)])],
        [
          'count 2^53 (past exact numbers; compared as u64)',
          Buffer.concat([u64(2 ** 53), GOLDEN_FRAME.subarray(8)]),
        ],
        ['table larger than the frame', withTable(100, [64, 69, 194, 196, 198, 200, 203])],
        ['first offset not the end of the table', withTable(7, [72, 69, 194, 196, 198, 200, 203])],
        ['offset past the end', withTable(7, [64, 69, 194, 196, 198, 200, 999])],
        ['offsets out of order', withTable(7, [64, 69, 194, 190, 198, 200, 203])],
        [
          'last offset short of the end (trailing bytes)',
          withTable(7, [64, 69, 194, 196, 198, 200, 202]),
        ],
        [
          'an offset with its high word set',
          Buffer.concat([
            GOLDEN_FRAME.subarray(0, 48),
            u64(2 ** 32 + 200),
            GOLDEN_FRAME.subarray(56),
          ]),
        ],
      ];
      for (const [name, frame] of cases) {
        it(name, () => {
          expectCode(() => decodeV1(frame), 'MALFORMED_FRAME');
        });
      }
    });

    it('an unknown channel, or a long one (not decoded): UNKNOWN_CHANNEL', () => {
      for (const channel of ['hb', 'SHELL', '', 'x'.repeat(100)]) {
        const frame = encodeV1({ ...goldenRaw(), channel: channel as RawMessage['channel'] });
        expectCode(() => decodeV1(frame), 'UNKNOWN_CHANNEL');
      }
    });

    it('a header that is not JSON: BAD_JSON', () => {
      const frame = encodeV1({ ...goldenRaw(), headerBytes: Buffer.from('{"msg_id":') });
      expectCode(() => decodeV1(frame), 'BAD_JSON');
    });

    it('a header without a required field: BAD_HEADER', () => {
      const frame = encodeV1({ ...goldenRaw(), headerBytes: Buffer.from('{"msg_id":"x"}') });
      expectCode(() => decodeV1(frame), 'BAD_HEADER');
    });

    it('leaves the other JSON parts unparsed (fromRaw checks them later)', () => {
      const raw = decodeV1(encodeV1({ ...goldenRaw(), content: Buffer.from('[1') }));
      expect(raw.content.toString()).to.equal('[1');
      expectCode(() => fromRaw(raw), 'BAD_JSON');
    });

    it('a frame over maxBytes: FRAME_TOO_LARGE', () => {
      expectCode(() => decodeV1(GOLDEN_FRAME, { maxBytes: 202 }), 'FRAME_TOO_LARGE');
      expect(() => decodeV1(GOLDEN_FRAME, { maxBytes: 203 })).to.not.throw();
    });

    it('more buffers than maxBuffers: FRAME_TOO_LARGE', () => {
      expectCode(() => decodeV1(GOLDEN_FRAME, { maxBuffers: 0 }), 'FRAME_TOO_LARGE');
      expect(decodeV1(GOLDEN_FRAME, { maxBuffers: 1 }).buffers).to.have.length(1);
    });
  });

  describe('properties', () => {
    it('round-trips any message, keeping the JSON bytes exactly', () => {
      fc.assert(
        fc.property(messageArb, (msg) => {
          const raw = toRaw(msg);
          const back = decodeV1(encodeV1(raw));
          expect(back.channel).to.equal(raw.channel);
          expect(back.headerBytes).to.deep.equal(raw.headerBytes);
          expect(back.parentHeader).to.deep.equal(raw.parentHeader);
          expect(back.metadata).to.deep.equal(raw.metadata);
          expect(back.content).to.deep.equal(raw.content);
          expect(back.buffers).to.deep.equal(raw.buffers);
          expect(normalise(fromRaw(back))).to.deep.equal(normalise(msg));
        }),
      );
    });

    it('encodes exactly what the documented layout says (reference encoder)', () => {
      fc.assert(
        fc.property(messageArb, (msg) => {
          const raw = toRaw(msg);
          const parts = [
            Buffer.from(raw.channel),
            raw.headerBytes,
            raw.parentHeader,
            raw.metadata,
            raw.content,
            ...raw.buffers,
          ];
          const offsets = [8 * (parts.length + 2)];
          for (const p of parts) offsets.push((offsets[offsets.length - 1] ?? 0) + p.length);
          const reference = Buffer.concat([u64(offsets.length, ...offsets), ...parts]);
          expect(encodeV1(raw).equals(reference)).to.equal(true);
        }),
      );
    });

    it('throws nothing but ProtocolError for random bytes', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
          try {
            decodeV1(Buffer.from(bytes));
          } catch (err) {
            expect(err).to.be.instanceOf(ProtocolError);
          }
        }),
        { numRuns: 1000 },
      );
    });

    it('throws nothing but ProtocolError for random offset tables', () => {
      fc.assert(
        fc.property(
          fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 10 }),
          fc.uint8Array({ maxLength: 200 }),
          (count, offsets, tail) => {
            const head = Buffer.alloc(8);
            head.writeBigUInt64LE(count);
            const frame = Buffer.concat([head, u64(...offsets), tail]);
            try {
              const raw = decodeV1(frame);
              for (const b of raw.buffers) {
                expect(b.byteOffset + b.length).to.be.at.most(frame.byteOffset + frame.length);
              }
            } catch (err) {
              expect(err).to.be.instanceOf(ProtocolError);
            }
          },
        ),
        { numRuns: 1000 },
      );
    });

    it('throws nothing but ProtocolError for corrupted valid frames', () => {
      fc.assert(
        fc.property(messageArb, mutationArb, (msg, m) => {
          try {
            decodeV1(mutate(encodeV1(toRaw(msg)), m));
          } catch (err) {
            expect(err).to.be.instanceOf(ProtocolError);
          }
        }),
        { numRuns: 1000 },
      );
    });
  });
});
