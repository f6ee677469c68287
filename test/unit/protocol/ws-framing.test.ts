import { expect } from 'chai';
import fc from 'fast-check';
import {
  decodeFrame,
  decodeRawFrame,
  encodeFrame,
  encodeRawFrame,
  fromRaw,
  subprotocolsFor,
  toRaw,
  V1_PROTOCOL,
  type WsFraming,
} from '../../../protocol/index.js';
import { messageArb, normalise } from './arbitraries.js';

const FRAMINGS: WsFraming[] = ['v1', 'legacy'];

function asBuffer(data: Buffer | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

describe('ws-framing: one switch over both channels framings', () => {
  it('offers the v1 subprotocol for v1 and none for legacy', () => {
    expect(subprotocolsFor('v1')).to.deep.equal([V1_PROTOCOL]);
    expect(subprotocolsFor('legacy')).to.deep.equal([]);
  });

  for (const framing of FRAMINGS) {
    it(`${framing}: a message survives encodeFrame → decodeFrame`, () => {
      fc.assert(
        fc.property(messageArb, (msg) => {
          const { data, binary } = encodeFrame(msg, framing);
          if (framing === 'v1') expect(binary, 'v1 frames are binary').to.equal(true);
          const back = decodeFrame(asBuffer(data), binary, framing);
          expect(normalise(back)).to.deep.equal(normalise(msg));
        }),
        { numRuns: 100 },
      );
    });

    it(`${framing}: a wire message survives encodeRawFrame → decodeRawFrame`, () => {
      fc.assert(
        fc.property(messageArb, (msg) => {
          const { data, binary } = encodeRawFrame(toRaw(msg), framing);
          const back = fromRaw(decodeRawFrame(asBuffer(data), binary, framing));
          expect(normalise(back)).to.deep.equal(normalise(msg));
        }),
        { numRuns: 100 },
      );
    });
  }

  it('applies the limits it is given to the framing it decodes', () => {
    const [msg] = fc.sample(messageArb, { numRuns: 1, seed: 7 });
    if (!msg) throw new Error('no sample');
    const v1 = encodeFrame(msg, 'v1');
    expect(() => decodeRawFrame(asBuffer(v1.data), true, 'v1', { v1: { maxBytes: 8 } })).to.throw(
      /over the limit|too large|bytes/i,
    );
  });
});
