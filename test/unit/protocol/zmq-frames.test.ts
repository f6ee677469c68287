import { expect } from 'chai';
import fc from 'fast-check';
import {
  DELIMITER,
  ProtocolError,
  Signer,
  decodeZmq,
  encodeZmq,
  fromRaw,
  toRaw,
  type ProtocolErrorCode,
} from '../../../protocol/index.js';
import { messageArb, mutate, mutationArb, normalise } from './arbitraries.js';
import { GOLDEN_KEY, GOLDEN_PARTS, GOLDEN_SIGNATURE } from './golden.js';

function expectCode(fn: () => unknown, code: ProtocolErrorCode): void {
  expect(fn).to.throw(ProtocolError).with.property('code', code);
}

const signer = new Signer(GOLDEN_KEY);
const [HEADER, PARENT, METADATA, CONTENT] = GOLDEN_PARTS as [Buffer, Buffer, Buffer, Buffer];
const IDENTITY = Buffer.from('client-session-1');
const BUFFER = Buffer.from([1, 2, 3]);

/** The golden multipart message, built by hand from the spec's layout. */
function goldenFrames(): Buffer[] {
  return [
    IDENTITY,
    Buffer.from('<IDS|MSG>'),
    Buffer.from(GOLDEN_SIGNATURE),
    HEADER,
    PARENT,
    METADATA,
    CONTENT,
    BUFFER,
  ];
}

/** Signs arbitrary header/parent/metadata/content text the way a peer holding the key could. */
function signedFrames(parts: [string, string, string, string], key = GOLDEN_KEY): Buffer[] {
  const bufs = parts.map((p) => Buffer.from(p));
  return [Buffer.from('<IDS|MSG>'), Buffer.from(new Signer(key).sign(bufs)), ...bufs];
}

describe('protocol/zmq-frames', () => {
  describe('golden bytes', () => {
    it('DELIMITER is <IDS|MSG>', () => {
      expect(DELIMITER.toString('latin1')).to.equal('<IDS|MSG>');
    });

    it('encodes identities, delimiter, hex signature, the 4 parts and buffers', () => {
      const frames = encodeZmq(
        {
          headerBytes: HEADER,
          parentHeader: PARENT,
          metadata: METADATA,
          content: CONTENT,
          buffers: [BUFFER],
        },
        signer,
        [IDENTITY],
      );
      expect(frames.map((f) => f.toString('hex'))).to.deep.equal(
        goldenFrames().map((f) => f.toString('hex')),
      );
    });

    it('puts the part Buffers in the output as they are (no copies)', () => {
      const buffers = [BUFFER, Buffer.from('x')];
      const frames = encodeZmq(
        {
          headerBytes: HEADER,
          parentHeader: PARENT,
          metadata: METADATA,
          content: CONTENT,
          buffers,
        },
        signer,
        [IDENTITY],
      );
      expect(frames[0]).to.equal(IDENTITY);
      expect(frames[3]).to.equal(HEADER);
      expect(frames[4]).to.equal(PARENT);
      expect(frames[5]).to.equal(METADATA);
      expect(frames[6]).to.equal(CONTENT);
      expect(frames[7]).to.equal(buffers[0]);
      expect(frames[8]).to.equal(buffers[1]);
    });

    it('decodes the golden frames and verifies them', () => {
      const { identities, raw } = decodeZmq(goldenFrames(), 'shell', signer);
      expect(identities.map(String)).to.deep.equal(['client-session-1']);
      expect(raw.channel).to.equal('shell');
      expect(raw.header).to.deep.equal(JSON.parse(HEADER.toString()));
      expect(raw.headerBytes).to.equal(HEADER);
      expect(raw.parentHeader).to.equal(PARENT);
      expect(raw.content).to.equal(CONTENT);
      expect(raw.buffers.map((b) => [...b])).to.deep.equal([[1, 2, 3]]);
      expect(fromRaw(raw).content).to.deep.equal({ code: '1+1', silent: false });
    });

    it('treats everything before the delimiter as identities (an IOPub topic too)', () => {
      const frames = [Buffer.from('kernel.abc.status'), ...goldenFrames().slice(1)];
      const { identities, raw } = decodeZmq(frames, 'iopub', signer);
      expect(identities.map(String)).to.deep.equal(['kernel.abc.status']);
      expect(raw.channel).to.equal('iopub');
    });

    it('decodes with no identities at all (a DEALER receiving)', () => {
      expect(decodeZmq(goldenFrames().slice(1), 'shell', signer).identities).to.deep.equal([]);
    });

    it('does not sign buffers (spec): a changed buffer still verifies', () => {
      const frames = goldenFrames();
      frames[7] = Buffer.from([9, 9, 9]);
      expect(decodeZmq(frames, 'shell', signer).raw.buffers[0]).to.deep.equal(
        Buffer.from([9, 9, 9]),
      );
    });
  });

  describe('refuses', () => {
    it('a message with no delimiter: MISSING_DELIMITER', () => {
      expectCode(
        () =>
          decodeZmq(
            goldenFrames().filter((_, i) => i !== 1),
            'shell',
            signer,
          ),
        'MISSING_DELIMITER',
      );
      expectCode(() => decodeZmq([], 'shell', signer), 'MISSING_DELIMITER');
    });

    it('fewer than 5 frames after the delimiter: MALFORMED_FRAME', () => {
      for (let keep = 1; keep < 7; keep++) {
        expectCode(
          () => decodeZmq(goldenFrames().slice(0, keep), 'shell', signer),
          keep < 2 ? 'MISSING_DELIMITER' : 'MALFORMED_FRAME',
        );
      }
    });

    it('an empty signature when a key is set: UNSIGNED', () => {
      const frames = goldenFrames();
      frames[2] = Buffer.alloc(0);
      expectCode(() => decodeZmq(frames, 'shell', signer), 'UNSIGNED');
    });

    it('a wrong signature: BAD_SIGNATURE', () => {
      const frames = goldenFrames();
      frames[2] = Buffer.from(GOLDEN_SIGNATURE.replace(/.$/, (c) => (c === '0' ? '1' : '0')));
      expectCode(() => decodeZmq(frames, 'shell', signer), 'BAD_SIGNATURE');
    });

    it('a tampered part: BAD_SIGNATURE', () => {
      for (const i of [3, 4, 5, 6]) {
        const frames = goldenFrames();
        frames[i] = Buffer.concat([frames[i] ?? Buffer.alloc(0), Buffer.from(' ')]);
        expectCode(() => decodeZmq(frames, 'shell', signer), 'BAD_SIGNATURE');
      }
    });

    it('a signature of the wrong length, without throwing anything else: BAD_SIGNATURE', () => {
      const frames = goldenFrames();
      frames[2] = Buffer.from('abc');
      expectCode(() => decodeZmq(frames, 'shell', signer), 'BAD_SIGNATURE');
    });

    it('a message signed with another key: BAD_SIGNATURE', () => {
      expectCode(
        () => decodeZmq(goldenFrames(), 'shell', new Signer('another key')),
        'BAD_SIGNATURE',
      );
    });

    it('checks the signature before parsing the header', () => {
      const frames = goldenFrames();
      frames[3] = Buffer.from('not json');
      expectCode(() => decodeZmq(frames, 'shell', signer), 'BAD_SIGNATURE');
    });

    it('a signed header that is not JSON: BAD_JSON', () => {
      expectCode(
        () => decodeZmq(signedFrames(['{', '{}', '{}', '{}']), 'shell', signer),
        'BAD_JSON',
      );
    });

    it('a signed header without msg_type: BAD_HEADER', () => {
      const header = JSON.parse(HEADER.toString()) as Record<string, unknown>;
      const noType = JSON.stringify({ ...header, msg_type: undefined });
      expectCode(
        () => decodeZmq(signedFrames([noType, '{}', '{}', '{}']), 'shell', signer),
        'BAD_HEADER',
      );
    });

    it('too many frames or bytes: FRAME_TOO_LARGE', () => {
      expectCode(
        () => decodeZmq(goldenFrames(), 'shell', signer, { maxFrames: 7 }),
        'FRAME_TOO_LARGE',
      );
      expect(() => decodeZmq(goldenFrames(), 'shell', signer, { maxFrames: 8 })).to.not.throw();
      const total = goldenFrames().reduce((n, f) => n + f.length, 0);
      expectCode(
        () => decodeZmq(goldenFrames(), 'shell', signer, { maxBytes: total - 1 }),
        'FRAME_TOO_LARGE',
      );
      expect(() => decodeZmq(goldenFrames(), 'shell', signer, { maxBytes: total })).to.not.throw();
    });

    it('a header, parent_header or metadata over its limit: FRAME_TOO_LARGE, exact bound passes', () => {
      const limits = {
        maxHeaderBytes: Math.max(HEADER.length, PARENT.length),
        maxMetadataBytes: METADATA.length,
      };
      expect(() => decodeZmq(goldenFrames(), 'shell', signer, limits)).to.not.throw();
      const parts: [string, string, string, string] = [
        HEADER.toString(),
        PARENT.toString(),
        METADATA.toString(),
        CONTENT.toString(),
      ];
      const pad = (json: string, n: number): string =>
        `${json.slice(0, -1)},"pad":"${'x'.repeat(n)}"}`;
      for (const [i, what] of [
        [0, 'header'],
        [1, 'parent_header'],
        [2, 'metadata'],
      ] as const) {
        const big = [...parts] as [string, string, string, string];
        big[i] = pad(parts[i] === '{}' ? '{"a":1}' : parts[i], 70_000);
        expect(() =>
          decodeZmq(signedFrames(big), 'shell', signer, {
            maxHeaderBytes: 65_536,
            maxMetadataBytes: 65_536,
          }),
        )
          .to.throw(ProtocolError)
          .with.property('message')
          .that.contains(what);
      }
    });

    it('checks sizes before the HMAC: an oversized message costs no signature check', () => {
      let verified = 0;
      const counting = new Signer(GOLDEN_KEY);
      const verify = counting.verify.bind(counting);
      counting.verify = (parts, signature) => {
        verified++;
        return verify(parts, signature);
      };
      const huge = Buffer.alloc(8 * 1024 ** 2, 0x20);
      const frames = goldenFrames();
      frames[4] = huge; // parent_header: 8 MiB of spaces, badly signed
      expectCode(
        () => decodeZmq(frames, 'iopub', counting, { maxHeaderBytes: 65_536 }),
        'FRAME_TOO_LARGE',
      );
      expectCode(
        () => decodeZmq(frames, 'iopub', counting, { maxBytes: 1024 ** 2 }),
        'FRAME_TOO_LARGE',
      );
      expect(verified).to.equal(0);
      decodeZmq(goldenFrames(), 'iopub', counting, { maxHeaderBytes: 65_536 });
      expect(verified, 'a message within the limits is verified').to.equal(1);
    });

    it('more identities than allowed before the delimiter: MISSING_DELIMITER', () => {
      const frames = [Buffer.from('a'), Buffer.from('b'), ...goldenFrames().slice(1)];
      expect(() => decodeZmq(frames, 'iopub', signer, { maxIdentities: 2 })).to.not.throw();
      expectCode(
        () => decodeZmq(frames, 'iopub', signer, { maxIdentities: 1 }),
        'MISSING_DELIMITER',
      );
    });
  });

  describe('with an empty key (no authentication, as jupyter_client)', () => {
    it('signs with an empty signature and accepts any', () => {
      const open = new Signer('');
      const frames = encodeZmq(
        {
          headerBytes: HEADER,
          parentHeader: PARENT,
          metadata: METADATA,
          content: CONTENT,
          buffers: [],
        },
        open,
      );
      expect(frames[1]?.length).to.equal(0);
      expect(decodeZmq(frames, 'shell', open).raw.headerBytes).to.equal(HEADER);
      expect(decodeZmq(goldenFrames(), 'shell', open).raw.headerBytes).to.equal(HEADER);
    });
  });

  describe('properties', () => {
    it('round-trips any message with any identities', () => {
      fc.assert(
        fc.property(
          messageArb,
          fc.array(fc.uint8Array({ minLength: 1, maxLength: 8 }), { maxLength: 3 }),
          (msg, ids) => {
            const identities = ids.map((i) => Buffer.from(i)).filter((i) => !i.equals(DELIMITER));
            const raw = toRaw(msg);
            const decoded = decodeZmq(encodeZmq(raw, signer, identities), msg.channel, signer);
            expect(decoded.identities).to.deep.equal(identities);
            expect(decoded.raw.headerBytes).to.deep.equal(raw.headerBytes);
            expect(decoded.raw.content).to.deep.equal(raw.content);
            expect(normalise(fromRaw(decoded.raw))).to.deep.equal(normalise(msg));
          },
        ),
      );
    });

    it('throws nothing but ProtocolError for random frames', () => {
      const frameArb = fc.oneof(
        fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
        fc.constant(Buffer.from('<IDS|MSG>')),
        fc.constantFrom('{}', '[]', '{"msg_id":1}', '').map((s) => Buffer.from(s)),
      );
      fc.assert(
        fc.property(fc.array(frameArb, { maxLength: 10 }), fc.boolean(), (frames, keyed) => {
          try {
            decodeZmq(frames, 'shell', keyed ? signer : new Signer(''));
          } catch (err) {
            expect(err).to.be.instanceOf(ProtocolError);
          }
        }),
        { numRuns: 500 },
      );
    });

    it('throws nothing but ProtocolError for corrupted messages (unkeyed, so parsing is reached)', () => {
      const open = new Signer('');
      fc.assert(
        fc.property(messageArb, fc.nat(), mutationArb, (msg, which, m) => {
          const frames = encodeZmq(toRaw(msg), open);
          const i = which % frames.length;
          frames[i] = mutate(frames[i] ?? Buffer.alloc(0), m);
          try {
            decodeZmq(frames, msg.channel, open);
          } catch (err) {
            expect(err).to.be.instanceOf(ProtocolError);
          }
        }),
        { numRuns: 500 },
      );
    });
  });
});
