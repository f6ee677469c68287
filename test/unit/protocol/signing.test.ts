import { createHmac } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { SIGNATURE_SCHEME, Signer } from '../../../protocol/index.js';
import { GOLDEN_KEY, GOLDEN_PARTS, GOLDEN_SIGNATURE } from './golden.js';

describe('protocol/signing Signer', () => {
  it('signs the golden vector with the digest Python computes', () => {
    expect(new Signer(GOLDEN_KEY).sign(GOLDEN_PARTS)).to.equal(GOLDEN_SIGNATURE);
  });

  it('matches an independent node:crypto HMAC over the concatenated parts', () => {
    const expected = createHmac('sha256', Buffer.from(GOLDEN_KEY))
      .update(Buffer.concat(GOLDEN_PARTS))
      .digest('hex');
    expect(expected).to.equal(GOLDEN_SIGNATURE);
  });

  it('takes a string key as UTF-8, same as the Buffer key', () => {
    const key = 'clé-✓';
    const parts = [Buffer.from('{}')];
    expect(new Signer(key).sign(parts)).to.equal(new Signer(Buffer.from(key, 'utf8')).sign(parts));
  });

  it('copies a Buffer key, so later changes to it do not change signatures', () => {
    const key = Buffer.from(GOLDEN_KEY);
    const signer = new Signer(key);
    key.fill(0);
    expect(signer.sign(GOLDEN_PARTS)).to.equal(GOLDEN_SIGNATURE);
  });

  it('accepts only hmac-sha256', () => {
    expect(SIGNATURE_SCHEME).to.equal('hmac-sha256');
    expect(() => new Signer('k', 'hmac-sha256')).to.not.throw();
    for (const scheme of ['hmac-md5', 'hmac-sha1', 'HMAC-SHA256', '']) {
      expect(() => new Signer('k', scheme), scheme).to.throw(TypeError, 'signature scheme');
    }
  });

  it('verifies a good signature, as text or bytes', () => {
    const signer = new Signer(GOLDEN_KEY);
    expect(signer.verify(GOLDEN_PARTS, GOLDEN_SIGNATURE)).to.equal(true);
    expect(signer.verify(GOLDEN_PARTS, Buffer.from(GOLDEN_SIGNATURE))).to.equal(true);
  });

  it('rejects a wrong signature, a different key, and changed parts', () => {
    const signer = new Signer(GOLDEN_KEY);
    const wrong = GOLDEN_SIGNATURE.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    expect(signer.verify(GOLDEN_PARTS, wrong)).to.equal(false);
    expect(new Signer('other key').verify(GOLDEN_PARTS, GOLDEN_SIGNATURE)).to.equal(false);
    const changed = [...GOLDEN_PARTS.slice(0, 3), Buffer.from('{"code":"1+2","silent":false}')];
    expect(signer.verify(changed, GOLDEN_SIGNATURE)).to.equal(false);
  });

  it('compares bytes exactly: an upper-case digest does not match (as in jupyter_client)', () => {
    expect(new Signer(GOLDEN_KEY).verify(GOLDEN_PARTS, GOLDEN_SIGNATURE.toUpperCase())).to.equal(
      false,
    );
  });

  it('returns false without throwing when the length differs (timingSafeEqual guard)', () => {
    const signer = new Signer(GOLDEN_KEY);
    for (const sig of ['', 'abc', GOLDEN_SIGNATURE + '0', GOLDEN_SIGNATURE.slice(1)]) {
      expect(() => signer.verify(GOLDEN_PARTS, sig), sig).to.not.throw();
      expect(signer.verify(GOLDEN_PARTS, sig), sig).to.equal(false);
    }
    // Same number of characters, more bytes: must not reach timingSafeEqual with unequal lengths.
    const multibyte = 'é' + GOLDEN_SIGNATURE.slice(1);
    expect(signer.verify(GOLDEN_PARTS, multibyte)).to.equal(false);
  });

  it('with an empty key signs nothing and checks nothing, as jupyter_client does', () => {
    const signer = new Signer('');
    expect(signer.enabled).to.equal(false);
    expect(signer.sign(GOLDEN_PARTS)).to.equal('');
    expect(signer.verify(GOLDEN_PARTS, 'anything')).to.equal(true);
    expect(new Signer(GOLDEN_KEY).enabled).to.equal(true);
  });

  it('verifies what it signs and nothing else (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }),
        fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 4, maxLength: 4 }),
        fc.nat(),
        (key, arrays, flip) => {
          const signer = new Signer(key);
          const parts = arrays.map((a) => Buffer.from(a));
          const sig = signer.sign(parts);
          expect(sig).to.match(/^[0-9a-f]{64}$/);
          expect(signer.verify(parts, sig)).to.equal(true);
          const i = flip % sig.length;
          const tampered = sig.slice(0, i) + (sig[i] === 'a' ? 'b' : 'a') + sig.slice(i + 1);
          expect(signer.verify(parts, tampered)).to.equal(false);
        },
      ),
    );
  });
});
