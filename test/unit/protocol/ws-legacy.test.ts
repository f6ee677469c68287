import { expect } from 'chai';
import fc from 'fast-check';
import {
  ProtocolError,
  decodeLegacy,
  encodeLegacy,
  encodeLegacyRaw,
  parseHeader,
  toRaw,
  type JupyterMessage,
  type ProtocolErrorCode,
  type RawMessage,
} from '../../../protocol/index.js';
import { messageArb, mutate, mutationArb, normalise, textMessageArb } from './arbitraries.js';

function expectCode(fn: () => unknown, code: ProtocolErrorCode): void {
  expect(fn).to.throw(ProtocolError).with.property('code', code);
}

const u32 = (...values: number[]): Buffer => {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v, 4 * i));
  return b;
};

// The field notes' example (§3.5): one 3-byte buffer after a 220-byte JSON, so the frame starts
// 00 00 00 02 | 00 00 00 0c | 00 00 00 e8. This JSON is what encodeLegacy writes for GOLDEN_MSG.
const GOLDEN_JSON =
  '{"channel":"iopub","msg_id":"1","msg_type":"stream","header":{"msg_id":"1","session":"s",' +
  '"username":"","date":"2024-01-01T00:00:00.000Z","msg_type":"stream","version":"5.3"},' +
  '"parent_header":{},"metadata":{},"content":{}}';

const GOLDEN_MSG: JupyterMessage = {
  channel: 'iopub',
  header: {
    msg_id: '1',
    session: 's',
    username: '',
    date: '2024-01-01T00:00:00.000Z',
    msg_type: 'stream',
    version: '5.3',
  },
  parent_header: {},
  metadata: {},
  content: {},
  buffers: [Buffer.from([1, 2, 3])],
};

/** A well-formed binary frame for a JSON text and buffers, built by hand. */
function binaryFrame(json: string, buffers: number[][]): Buffer {
  const jsonBytes = Buffer.from(json, 'utf8');
  const nbufs = 1 + buffers.length;
  const offsets = [4 * (nbufs + 1)];
  for (const part of [jsonBytes, ...buffers.slice(0, -1).map((b) => Buffer.from(b))]) {
    offsets.push((offsets[offsets.length - 1] ?? 0) + part.length);
  }
  return Buffer.concat([u32(nbufs, ...offsets), jsonBytes, ...buffers.map((b) => Buffer.from(b))]);
}

const HEADER_JSON = JSON.stringify(GOLDEN_MSG.header);

describe('protocol/ws-legacy', () => {
  describe('golden bytes', () => {
    it('encodes the field-notes example byte for byte', () => {
      expect(Buffer.byteLength(GOLDEN_JSON)).to.equal(220);
      const { data, binary } = encodeLegacy(GOLDEN_MSG);
      expect(binary).to.equal(true);
      const expected = Buffer.concat([
        Buffer.from('00000002' + '0000000c' + '000000e8', 'hex'),
        Buffer.from(GOLDEN_JSON),
        Buffer.from([1, 2, 3]),
      ]);
      expect(Buffer.isBuffer(data) && data.toString('hex')).to.equal(expected.toString('hex'));
    });

    it('decodes the field-notes example back to the message', () => {
      const frame = binaryFrame(GOLDEN_JSON, [[1, 2, 3]]);
      expect(frame.subarray(0, 12).toString('hex')).to.equal('000000020000000c000000e8');
      expect(normalise(decodeLegacy(frame, true))).to.deep.equal(normalise(GOLDEN_MSG));
    });

    it('encodeLegacyRaw produces the same golden binary frame', () => {
      const { data, binary } = encodeLegacyRaw(toRaw(GOLDEN_MSG));
      expect(binary).to.equal(true);
      expect(data).to.deep.equal(encodeLegacy(GOLDEN_MSG).data);
    });

    it('encodes a message without buffers as one JSON text frame', () => {
      const { data, binary } = encodeLegacy({ ...GOLDEN_MSG, buffers: [] });
      expect(binary).to.equal(false);
      expect(data).to.equal(GOLDEN_JSON.slice(0, -1) + ',"buffers":[]}');
    });

    it('encodeLegacyRaw splices the parts verbatim (no re-serialisation)', () => {
      const raw: RawMessage = {
        ...toRaw({ ...GOLDEN_MSG, buffers: [] }),
        content: Buffer.from('{ "name" : "stdout", "text" : "é\\n" }'),
        metadata: Buffer.from('{}\n'),
      };
      const { data, binary } = encodeLegacyRaw(raw);
      expect(binary).to.equal(false);
      expect(Buffer.isBuffer(data) ? data.toString('utf8') : data).to.equal(
        '{"channel":"iopub","msg_id":"1","msg_type":"stream","header":' +
          HEADER_JSON +
          ',"parent_header":{},"metadata":{}\n,"content":{ "name" : "stdout", "text" : "é\\n" }' +
          ',"buffers":[]}',
      );
    });

    it('decodes a JupyterLab text frame (channel last, buffers: [])', () => {
      const text = JSON.stringify({
        header: GOLDEN_MSG.header,
        parent_header: {},
        metadata: {},
        content: { code: 'x' },
        channel: 'shell',
        buffers: [],
      });
      const msg = decodeLegacy(text, false);
      expect(msg.channel).to.equal('shell');
      expect(msg.content).to.deep.equal({ code: 'x' });
      expect(msg.buffers).to.deep.equal([]);
      expect(decodeLegacy(Buffer.from(text), false)).to.deep.equal(msg);
    });

    it('gives binary buffers as views into the frame, not copies', () => {
      const frame = binaryFrame(GOLDEN_JSON, [[1, 2, 3], [4]]);
      const msg = decodeLegacy(frame, true);
      expect(msg.buffers.map((b) => [...b])).to.deep.equal([[1, 2, 3], [4]]);
      expect(msg.buffers[0]?.buffer).to.equal(frame.buffer);
    });

    it('accepts empty buffers, including an empty last one', () => {
      const msg = decodeLegacy(binaryFrame(GOLDEN_JSON, [[], [7], []]), true);
      expect(msg.buffers.map((b) => [...b])).to.deep.equal([[], [7], []]);
    });
  });

  describe('defaults', () => {
    const base = { header: GOLDEN_MSG.header, content: {} };

    it('a missing or null channel means shell (as jupyter_server)', () => {
      expect(decodeLegacy(JSON.stringify(base), false).channel).to.equal('shell');
      expect(decodeLegacy(JSON.stringify({ ...base, channel: null }), false).channel).to.equal(
        'shell',
      );
    });

    it('missing parent_header, metadata and content become {}', () => {
      const msg = decodeLegacy(JSON.stringify({ header: GOLDEN_MSG.header }), false);
      expect(msg.parent_header).to.deep.equal({});
      expect(msg.metadata).to.deep.equal({});
      expect(msg.content).to.deep.equal({});
    });

    it('ignores top-level msg_id/msg_type: the header is authoritative', () => {
      const msg = decodeLegacy(
        JSON.stringify({ ...base, msg_id: 'other', msg_type: 'other' }),
        false,
      );
      expect(msg.header.msg_id).to.equal('1');
      expect(msg.header.msg_type).to.equal('stream');
    });
  });

  describe('refuses', () => {
    const good = { channel: 'shell', header: GOLDEN_MSG.header, content: {} };

    it('text that is not JSON, or not an object: BAD_JSON', () => {
      for (const bad of ['', '{', 'null', '[]', '"x"', '{"a":1}x']) {
        expectCode(() => decodeLegacy(bad, false), 'BAD_JSON');
      }
    });

    it('content, metadata or parent_header that are not objects: BAD_JSON', () => {
      for (const key of ['content', 'metadata', 'parent_header']) {
        for (const v of [[], 'x', 1, null]) {
          expectCode(() => decodeLegacy(JSON.stringify({ ...good, [key]: v }), false), 'BAD_JSON');
        }
      }
    });

    it('a missing or invalid header: BAD_HEADER', () => {
      expectCode(() => decodeLegacy(JSON.stringify({ channel: 'shell' }), false), 'BAD_HEADER');
      expectCode(
        () =>
          decodeLegacy(
            JSON.stringify({ ...good, header: { ...GOLDEN_MSG.header, msg_id: 7 } }),
            false,
          ),
        'BAD_HEADER',
      );
      expectCode(
        () => decodeLegacy(JSON.stringify({ ...good, parent_header: { msg_id: 'x' } }), false),
        'BAD_HEADER',
      );
    });

    it('an unknown or non-string channel: UNKNOWN_CHANNEL', () => {
      for (const channel of ['hb', 'SHELL', '', 'constructor', 3, {}]) {
        expectCode(
          () => decodeLegacy(JSON.stringify({ ...good, channel }), false),
          'UNKNOWN_CHANNEL',
        );
      }
    });

    it('a frame over maxBytes, counting UTF-8 bytes: FRAME_TOO_LARGE', () => {
      const text = JSON.stringify({ ...good, content: { t: 'é'.repeat(50) } });
      const bytes = Buffer.byteLength(text);
      expectCode(() => decodeLegacy(text, false, { maxBytes: bytes - 1 }), 'FRAME_TOO_LARGE');
      expect(() => decodeLegacy(text, false, { maxBytes: bytes })).to.not.throw();
      const frame = binaryFrame(GOLDEN_JSON, [[1, 2, 3]]);
      expectCode(
        () => decodeLegacy(frame, true, { maxBytes: frame.length - 1 }),
        'FRAME_TOO_LARGE',
      );
    });

    it('more buffers than maxBuffers: FRAME_TOO_LARGE', () => {
      const frame = binaryFrame(GOLDEN_JSON, [[1], [2], [3]]);
      expectCode(() => decodeLegacy(frame, true, { maxBuffers: 2 }), 'FRAME_TOO_LARGE');
      expect(decodeLegacy(frame, true, { maxBuffers: 3 }).buffers).to.have.length(3);
    });

    describe('binary frames with a bad layout: MALFORMED_FRAME', () => {
      const json = Buffer.from(GOLDEN_JSON);
      const cases: [string, Buffer][] = [
        ['empty', Buffer.alloc(0)],
        ['shorter than the count', Buffer.from([0, 0, 2])],
        ['nbufs 0', Buffer.concat([u32(0), json])],
        ['nbufs 1 (JSON only; JupyterLab refuses it too)', Buffer.concat([u32(1, 8), json])],
        ['nbufs huge', Buffer.concat([u32(0xffffffff, 12), json])],
        ['offset table past the end', u32(3, 16, 16)],
        [
          'first offset not the end of the table',
          Buffer.concat([u32(2, 16, 232), json, Buffer.from([1, 2, 3])]),
        ],
        ['offset past the end', Buffer.concat([u32(2, 12, 9999), json, Buffer.from([1, 2, 3])])],
        ['offsets out of order', Buffer.concat([u32(3, 16, 300, 240), json, Buffer.alloc(100)])],
        ['truncated after the table', u32(2, 12, 232)],
      ];
      for (const [name, frame] of cases) {
        it(name, () => {
          expectCode(() => decodeLegacy(frame, true), 'MALFORMED_FRAME');
        });
      }
    });

    it('a binary frame whose JSON part is bad: BAD_JSON', () => {
      expectCode(() => decodeLegacy(binaryFrame('{', [[1]]), true), 'BAD_JSON');
    });

    it('encodeLegacyRaw refuses parts that would inject fields into the spliced JSON', () => {
      const raw = toRaw({ ...GOLDEN_MSG, buffers: [] });
      for (const evil of [
        '{}, "header": {"msg_id": "forged"}',
        '{"a":1},"channel":"shell","x":{}',
        '{',
        '[]',
        '',
      ]) {
        expectCode(() => encodeLegacyRaw({ ...raw, content: Buffer.from(evil) }), 'BAD_JSON');
        expectCode(() => encodeLegacyRaw({ ...raw, metadata: Buffer.from(evil) }), 'BAD_JSON');
        expectCode(() => encodeLegacyRaw({ ...raw, parentHeader: Buffer.from(evil) }), 'BAD_JSON');
      }
    });
  });

  it('encodeLegacyRaw turns invalid UTF-8 inside a string into U+FFFD and stays valid JSON', () => {
    const raw = {
      ...toRaw({ ...GOLDEN_MSG, buffers: [] }),
      content: Buffer.concat([
        Buffer.from('{"text":"a'),
        Buffer.from([0xff, 0xc3]),
        Buffer.from('b"}'),
      ]),
    };
    const { data, binary } = encodeLegacyRaw(raw);
    expect(binary).to.equal(false);
    expect(data).to.be.a('string');
    expect(decodeLegacy(data, false).content).to.deep.equal({ text: 'a\ufffd\ufffdb' });
  });

  it('does not modify the message it encodes', () => {
    const msg = { ...GOLDEN_MSG, buffers: [Buffer.from([1])] };
    const before = normalise(msg);
    encodeLegacy(msg);
    expect(normalise(msg)).to.deep.equal(before);
    expect(msg.buffers).to.have.length(1);
  });

  describe('properties', () => {
    it('round-trips any message through encodeLegacy (text and binary)', () => {
      fc.assert(
        fc.property(messageArb, (msg) => {
          const { data, binary } = encodeLegacy(msg);
          expect(binary).to.equal(msg.buffers.length > 0);
          expect(normalise(decodeLegacy(data, binary))).to.deep.equal(normalise(msg));
        }),
      );
    });

    it('round-trips any text message, as a string or as UTF-8 bytes', () => {
      fc.assert(
        fc.property(textMessageArb, (msg) => {
          const { data } = encodeLegacy(msg);
          expect(typeof data).to.equal('string');
          const bytes = Buffer.from(data as string, 'utf8');
          expect(normalise(decodeLegacy(bytes, false))).to.deep.equal(normalise(msg));
        }),
      );
    });

    it('encodeLegacyRaw agrees with encodeLegacy and round-trips', () => {
      fc.assert(
        fc.property(messageArb, (msg) => {
          const fast = encodeLegacyRaw(toRaw(msg));
          const slow = encodeLegacy(msg);
          expect(fast.binary).to.equal(slow.binary);
          const asText = (d: Buffer | string): string =>
            typeof d === 'string' ? d : d.toString('utf8');
          if (fast.binary) expect(fast.data).to.deep.equal(slow.data);
          else expect(asText(fast.data)).to.equal(asText(slow.data));
          const back = decodeLegacy(fast.data, fast.binary);
          expect(normalise(back)).to.deep.equal(normalise(msg));
          expect(parseHeader(Buffer.from(JSON.stringify(back.header)))).to.deep.equal(back.header);
        }),
      );
    });

    it('throws nothing but ProtocolError for random bytes and text', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, isBinary) => {
          try {
            decodeLegacy(Buffer.from(bytes), isBinary);
          } catch (err) {
            expect(err).to.be.instanceOf(ProtocolError);
          }
        }),
        { numRuns: 1000 },
      );
      fc.assert(
        fc.property(fc.string({ unit: 'binary' }), (text) => {
          try {
            decodeLegacy(text, false);
          } catch (err) {
            expect(err).to.be.instanceOf(ProtocolError);
          }
        }),
      );
    });

    it('throws nothing but ProtocolError for corrupted valid frames', () => {
      fc.assert(
        fc.property(messageArb, mutationArb, (msg, m) => {
          const { data, binary } = encodeLegacy(msg);
          const frame = mutate(typeof data === 'string' ? Buffer.from(data) : data, m);
          try {
            decodeLegacy(frame, binary);
          } catch (err) {
            expect(err).to.be.instanceOf(ProtocolError);
          }
        }),
        { numRuns: 1000 },
      );
    });

    it('a small nbufs with huge offsets or a huge nbufs never reads past the frame', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 0xffffffff }),
          fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 6 }),
          fc.uint8Array({ maxLength: 64 }),
          (nbufs, offsets, tail) => {
            const frame = Buffer.concat([u32(nbufs, ...offsets), tail]);
            try {
              const msg = decodeLegacy(frame, true);
              for (const b of msg.buffers) {
                expect(b.byteOffset + b.length).to.be.at.most(frame.byteOffset + frame.length);
              }
            } catch (err) {
              expect(err).to.be.instanceOf(ProtocolError);
            }
          },
        ),
      );
    });
  });
});
