import { expect } from 'chai';
import fc from 'fast-check';
import {
  ProtocolError,
  isJsonObject,
  isJsonObjectBytes,
  parseJsonObject,
} from '../../../protocol/index.js';

/** What JSON.parse says: is this text exactly one JSON object? */
function parsesToObject(text: string): boolean {
  try {
    return isJsonObject(JSON.parse(text));
  } catch {
    return false;
  }
}

const scan = (text: string): boolean => isJsonObjectBytes(Buffer.from(text, 'utf8'));

/** Characters that exercise the JSON grammar when inserted into valid JSON text. */
const GRAMMAR = Array.from('{}[]:,"\\ \t\n\r-+.eE0123456789tfnrul/bx');

describe('protocol/json-bytes parseJsonObject', () => {
  it('parses an object', () => {
    expect(parseJsonObject(Buffer.from('{"a":[1]}'), 'content')).to.deep.equal({ a: [1] });
  });

  it('throws BAD_JSON for bad JSON and for non-objects, keeping the SyntaxError as cause', () => {
    for (const bad of ['', '{', '[]', 'null', '1', '"x"']) {
      expect(() => parseJsonObject(Buffer.from(bad), 'content'))
        .to.throw(ProtocolError)
        .with.property('code', 'BAD_JSON');
    }
    expect(() => parseJsonObject(Buffer.from('{'), 'content'))
      .to.throw(ProtocolError)
      .with.property('cause')
      .that.is.instanceOf(SyntaxError);
  });
});

describe('protocol/json-bytes isJsonObjectBytes', () => {
  it('accepts objects with every kind of value and surrounding whitespace', () => {
    for (const ok of [
      '{}',
      ' \t\r\n{ } \n',
      '{"a":1}',
      '{"a":[1,-0,0.5,1e10,1E-3,-12.5e+3,true,false,null,"s",{},[]]}',
      '{"esc":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\\ud800"}',
      '{"é":"😀"}',
      '{"a":{"b":{"c":[[[]]]}}}',
      '{"a" : 1 , "b" : [ 1 , 2 ] }',
    ]) {
      expect(scan(ok), ok).to.equal(true);
      expect(parsesToObject(ok), ok).to.equal(true);
    }
  });

  it('refuses non-objects, bad grammar, trailing data and splice injections', () => {
    for (const bad of [
      '',
      ' ',
      '[]',
      '"s"',
      '1',
      'null',
      '{',
      '}',
      '{"a"}',
      '{"a":}',
      '{"a":1,}',
      '{,"a":1}',
      '{"a":1 "b":2}',
      '{a:1}',
      "{'a':1}",
      '{"a":01}',
      '{"a":1.}',
      '{"a":.5}',
      '{"a":-}',
      '{"a":1e}',
      '{"a":+1}',
      '{"a":tru}',
      '{"a":nul}',
      '{"a":"\\x"}',
      '{"a":"\\u12G4"}',
      '{"a":"tab\there"}',
      '{"a":[1,]}',
      '{"a":[1}',
      '{"a":{]}',
      '{}{}',
      '{} x',
      '{}, "header": {"msg_id": "forged"}',
      '{"a":1}, "channel": "shell", "x": {"b":2}',
      '\u00a0{}',
      '\ufeff{}',
    ]) {
      expect(scan(bad), JSON.stringify(bad)).to.equal(false);
      expect(parsesToObject(bad), JSON.stringify(bad)).to.equal(false);
    }
  });

  it('accepts invalid UTF-8 inside strings but never outside them', () => {
    expect(
      isJsonObjectBytes(Buffer.from([0x7b, 0x22, 0xff, 0xc3, 0x22, 0x3a, 0x31, 0x7d])),
    ).to.equal(true);
    expect(isJsonObjectBytes(Buffer.from([0x7b, 0xff, 0x7d]))).to.equal(false);
  });

  it('agrees with JSON.parse on serialised JSON values (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        const text = JSON.stringify(v);
        expect(scan(text)).to.equal(isJsonObject(v));
      }),
    );
  });

  it('agrees with JSON.parse on corrupted JSON text (property)', () => {
    const corrupted = fc
      .tuple(
        fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.constantFrom(...GRAMMAR)), {
          minLength: 1,
          maxLength: 4,
        }),
      )
      .map(([obj, edits]) => {
        let text = JSON.stringify(obj);
        for (const [at, del, ch] of edits) {
          const i = at % (text.length + 1);
          text = text.slice(0, i) + ch + text.slice(i + (del % 2));
        }
        return text;
      });
    fc.assert(
      fc.property(corrupted, (text) => {
        expect(scan(text), text).to.equal(parsesToObject(text));
      }),
      { numRuns: 2000 },
    );
  });

  it('agrees with JSON.parse on arbitrary text (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        const text = `{${s}`;
        expect(scan(text), text).to.equal(parsesToObject(text));
      }),
    );
  });
});
