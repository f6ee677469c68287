/** The IOPub output rate limit on a manual clock. */
import { expect } from 'chai';
import { IopubRateLimit } from '../../../gateway/iopub-rate-limit.js';

describe('IopubRateLimit', () => {
  it('passes everything when off', () => {
    const l = new IopubRateLimit({ msgsPerSecond: 0, bytesPerSecond: 0, windowMs: 1000 });
    for (let i = 0; i < 10_000; i++) expect(l.check('stream', 1e6)).to.equal('pass');
  });

  it('drops output past the message rate, tells the client once, and passes status and errors', () => {
    let now = 0;
    const l = new IopubRateLimit({
      msgsPerSecond: 10,
      bytesPerSecond: 0,
      windowMs: 1000,
      now: () => now,
    });
    const verdicts = Array.from({ length: 12 }, () => l.check('stream', 10));
    expect(verdicts.slice(0, 10).every((v) => v === 'pass')).to.equal(true);
    expect(verdicts[10]).to.equal('drop-and-notify');
    expect(verdicts[11]).to.equal('drop');
    expect(l.check('status', 10)).to.equal('pass');
    expect(l.check('error', 10)).to.equal('pass');
    now = 1000;
    expect(l.check('stream', 10), 'a new window passes again').to.equal('pass');
  });

  it('drops output past the byte rate and starts over when reset (kernel idle)', () => {
    const l = new IopubRateLimit({
      msgsPerSecond: 0,
      bytesPerSecond: 1000,
      windowMs: 3000,
      now: () => 0,
    });
    expect(l.check('stream', 2999)).to.equal('pass');
    expect(l.check('display_data', 2)).to.equal('drop-and-notify');
    l.reset();
    expect(l.check('stream', 100)).to.equal('pass');
  });
});
