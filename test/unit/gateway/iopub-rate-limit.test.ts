/** The IOPub output rate limit on a manual clock. */
import { expect } from 'chai';
import { IopubRateLimit } from '../../../gateway/kernel/iopub-rate-limit.js';

describe('IopubRateLimit', () => {
  it('passes everything when off', () => {
    const l = new IopubRateLimit({ msgsPerSecond: 0, bytesPerSecond: 0, windowMs: 1000 });
    for (let i = 0; i < 10_000; i++) expect(l.check(1e6)).to.equal('pass');
  });

  it('counts every message, drops past the message rate, tells the client once, passes only exempt ones', () => {
    let now = 0;
    const l = new IopubRateLimit({
      msgsPerSecond: 10,
      bytesPerSecond: 0,
      windowMs: 1000,
      now: () => now,
    });
    const verdicts = Array.from({ length: 12 }, () => l.check(10));
    expect(verdicts.slice(0, 10).every((v) => v === 'pass')).to.equal(true);
    expect(verdicts[10]).to.equal('drop-and-notify');
    expect(verdicts[11]).to.equal('drop');
    expect(l.check(10, true), 'the busy/idle of a pending request').to.equal('pass');
    expect(l.check(10), 'anything else, status included').to.equal('drop');
    now = 1000;
    expect(l.check(10), 'a new window passes again').to.equal('pass');
  });

  it('drops past the byte rate and starts over on an idle once the window is older than minResetMs', () => {
    let now = 0;
    const l = new IopubRateLimit({
      msgsPerSecond: 0,
      bytesPerSecond: 1000,
      windowMs: 3000,
      minResetMs: 300,
      now: () => now,
    });
    expect(l.check(2999)).to.equal('pass');
    expect(l.check(2)).to.equal('drop-and-notify');
    expect(l.idle(), 'an idle right after the window opened').to.equal(false);
    expect(l.check(100)).to.equal('drop');
    now = 300;
    expect(l.idle()).to.equal(true);
    expect(l.check(100)).to.equal('pass');
  });

  it('a flood of idles (forged or not) cannot reset the window faster than minResetMs', () => {
    let now = 0;
    const l = new IopubRateLimit({
      msgsPerSecond: 100,
      bytesPerSecond: 0,
      windowMs: 3000,
      minResetMs: 300,
      now: () => now,
    });
    let passed = 0;
    // 3 s of a kernel sending 10 messages and an idle every millisecond.
    for (; now < 3000; now++) {
      for (let i = 0; i < 10; i++) if (l.check(1) === 'pass') passed++;
      l.idle();
    }
    // At most one window's budget (300) per 300 ms: 10 windows.
    expect(passed).to.be.at.most(300 * 10);
    expect(passed).to.be.at.least(300);
  });
});
