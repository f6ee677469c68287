/** Bounded log lines: clipped kernel strings, per-kernel warning rate, redacted token parameters. */
import { expect } from 'chai';
import { clip, clipFields, LOG_FIELD_MAX, LogRateLimit } from '../../../gateway/base/log-limit.js';
import { redactUrl } from '../../../gateway/base/logger.js';

describe('log limits', () => {
  it('clips long strings and says how long they were; short ones pass unchanged', () => {
    expect(clip('stream')).to.equal('stream');
    const long = clip('m'.repeat(1 << 20));
    expect(long.length).to.be.below(LOG_FIELD_MAX + 30);
    expect(long).to.match(/…\[1048576 chars\]$/);
    expect(clipFields({ msg_type: 'x'.repeat(5000), n: 5 })).to.deep.equal({
      msg_type: clip('x'.repeat(5000)),
      n: 5,
    });
  });

  it('allows N lines per interval, then counts the rest and reports them with the next line', () => {
    let now = 0;
    const l = new LogRateLimit({ perInterval: 3, intervalMs: 1000, now: () => now });
    const taken = Array.from({ length: 10 }, () => l.take());
    expect(taken).to.deep.equal([
      0,
      0,
      0,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    now = 999;
    expect(l.take()).to.equal(undefined);
    now = 1000;
    expect(l.take(), 'the first line of the next interval reports 8 suppressed').to.equal(8);
    expect(l.take()).to.equal(0);
  });

  it('bounds lines per second under a flood (a million warnings in 10 s: at most 10 per second)', () => {
    let now = 0;
    const l = new LogRateLimit({ perInterval: 10, intervalMs: 1000, now: () => now });
    let lines = 0;
    for (let i = 0; i < 1_000_000; i++) {
      now = i / 100; // 10 s
      if (l.take() !== undefined) lines++;
    }
    expect(lines).to.be.at.most(110);
  });
});

describe('redactUrl', () => {
  it('redacts token, also when its name is percent-encoded, and nothing else', () => {
    expect(redactUrl('/api/kernels/x/channels?%74oken=s3cret&session_id=a')).to.equal(
      '/api/kernels/x/channels?%74oken=[redacted]&session_id=a',
    );
    expect(redactUrl('/a?x=1&%74%6F%6B%65%6E=s3cret')).to.equal(
      '/a?x=1&%74%6F%6B%65%6E=[redacted]',
    );
    expect(redactUrl('/a?token=s3cret')).to.equal('/a?token=[redacted]');
    expect(redactUrl('/a?tokens=keep&atoken=keep')).to.equal('/a?tokens=keep&atoken=keep');
    expect(redactUrl('/a?%zz=1&token=s')).to.equal('/a?%zz=1&token=[redacted]');
  });
});
