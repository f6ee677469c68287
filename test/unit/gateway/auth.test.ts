/** Token parsing and comparison, origin checks. */
import type { IncomingMessage } from 'node:http';
import { expect } from 'chai';
import { originAllowed, tokenFromHeader, tokenMatches } from '../../../gateway/http/auth.js';

function req(headers: Record<string, string>): IncomingMessage {
  return { headers } as unknown as IncomingMessage;
}

describe('auth', () => {
  it('accepts token and Bearer schemes, case-insensitively', () => {
    expect(tokenFromHeader('token abc')).to.equal('abc');
    expect(tokenFromHeader('Bearer abc')).to.equal('abc');
    expect(tokenFromHeader('TOKEN abc')).to.equal('abc');
    expect(tokenFromHeader('Basic abc')).to.equal(undefined);
    expect(tokenFromHeader(undefined)).to.equal(undefined);
  });

  it('compares tokens exactly, whatever their lengths, and never matches an empty expected token', () => {
    expect(tokenMatches('abc', 'abc')).to.equal(true);
    expect(tokenMatches('abd', 'abc')).to.equal(false);
    expect(tokenMatches('abcd', 'abc')).to.equal(false);
    expect(tokenMatches('', '')).to.equal(false);
  });

  it('allows same-host and allow-listed origins, and requests without an Origin', () => {
    expect(originAllowed(req({ host: '127.0.0.1:8888' }), [])).to.equal(true);
    expect(
      originAllowed(req({ host: '127.0.0.1:8888', origin: 'http://127.0.0.1:8888' }), []),
    ).to.equal(true);
    expect(
      originAllowed(req({ host: '127.0.0.1:8888', origin: 'http://evil.example' }), []),
    ).to.equal(false);
    expect(
      originAllowed(req({ host: 'h', origin: 'http://lab.example' }), ['http://lab.example']),
    ).to.equal(true);
    expect(originAllowed(req({ host: 'h', origin: 'http://x' }), ['*'])).to.equal(true);
    expect(originAllowed(req({ host: 'h', origin: 'not a url' }), [])).to.equal(false);
  });
});
