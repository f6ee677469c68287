/** The interrupt → kill ladder and the execution deadline, on fake timers (milliseconds, no sleeping). */
import { expect } from 'chai';
import {
  ExecutionDeadline,
  InterruptLadder,
  sweepAfterDeadline,
  type SweepReport,
} from '../../../gateway/base/deadline.js';
import { FakeClock } from '../../helpers/fake-clock.js';

describe('InterruptLadder', () => {
  it('interrupts and stops there when the execution settles within the grace period', async () => {
    const timers = new FakeClock();
    const calls: string[] = [];
    const ladder = new InterruptLadder(
      {
        interrupt: () => (calls.push('interrupt'), Promise.resolve()),
        kill: () => (calls.push('kill'), Promise.resolve()),
      },
      1000,
      timers,
    );
    const outcome = ladder.run();
    await timers.advance(500);
    ladder.settle();
    expect(await outcome).to.equal('interrupted');
    expect(calls).to.deep.equal(['interrupt']);
    expect(timers.pending, 'grace timer cleared').to.equal(0);
  });

  it('kills when the interrupt does not end the execution within the grace period', async () => {
    const timers = new FakeClock();
    const calls: string[] = [];
    const ladder = new InterruptLadder(
      {
        interrupt: () => (calls.push('interrupt'), Promise.resolve()),
        kill: () => (calls.push('kill'), Promise.resolve()),
      },
      1000,
      timers,
    );
    const outcome = ladder.run();
    await timers.advance(999);
    expect(calls).to.deep.equal(['interrupt']);
    await timers.advance(1);
    expect(await outcome).to.equal('killed');
    expect(calls).to.deep.equal(['interrupt', 'kill']);
  });

  it('joins a climb already under way instead of starting another', async () => {
    const timers = new FakeClock();
    let interrupts = 0;
    const ladder = new InterruptLadder(
      { interrupt: () => (interrupts++, Promise.resolve()), kill: () => Promise.resolve() },
      100,
      timers,
    );
    const a = ladder.run();
    const b = ladder.run();
    expect(a).to.equal(b);
    expect(ladder.running).to.equal(true);
    ladder.settle();
    await a;
    expect(interrupts).to.equal(1);
    expect(ladder.running).to.equal(false);
  });

  it('still kills when sending the interrupt fails', async () => {
    const timers = new FakeClock();
    let killed = false;
    const ladder = new InterruptLadder(
      {
        interrupt: () => Promise.reject(new Error('control socket gone')),
        kill: () => ((killed = true), Promise.resolve()),
      },
      10,
      timers,
    );
    const outcome = ladder.run();
    await timers.advance(10);
    expect(await outcome).to.equal('killed');
    expect(killed).to.equal(true);
  });
});

describe('ExecutionDeadline', () => {
  it('fires once at the deadline for an armed execution', async () => {
    const timers = new FakeClock();
    const fired: string[] = [];
    const d = new ExecutionDeadline(30_000, timers);
    d.arm('a', () => fired.push('a'));
    d.arm('a', () => fired.push('a-again'));
    await timers.advance(29_999);
    expect(fired).to.deep.equal([]);
    await timers.advance(1);
    expect(fired).to.deep.equal(['a']);
  });

  it('does not fire once disarmed, and is off at 0', async () => {
    const timers = new FakeClock();
    const fired: string[] = [];
    const d = new ExecutionDeadline(100, timers);
    d.arm('a', () => fired.push('a'));
    d.disarm('a');
    const off = new ExecutionDeadline(0, timers);
    off.arm('b', () => fired.push('b'));
    expect(off.enabled).to.equal(false);
    await timers.advance(1000);
    expect(fired).to.deep.equal([]);
  });
});

describe('sweepAfterDeadline', () => {
  const policy = { windowMs: 2000, samples: 20, maxCores: 0.1, maxRunnable: 0.5 };

  /** Steps whose sweep reports `report` (or throws it); restarts and activity recorded. */
  function steps(report: SweepReport | Error, activity = [{ started: 1, busy: false }]) {
    const restarts: string[] = [];
    const windows: number[] = [];
    let i = 0;
    return {
      restarts,
      windows,
      steps: {
        sweep: (windowMs: number) => {
          windows.push(windowMs);
          return report instanceof Error ? Promise.reject(report) : Promise.resolve(report);
        },
        activity: () => activity[Math.min(i++, activity.length - 1)] ?? { started: 0, busy: false },
        restart: (why: string) => {
          restarts.push(why);
          return Promise.resolve();
        },
      },
    };
  }

  it('leaves a quiet kernel alone after killing what the execution left', async () => {
    const s = steps({ killed: 2, cores: 0.01, runnable: 0 });
    const r = await sweepAfterDeadline(s.steps, policy);
    expect(r.outcome).to.equal('quiet');
    expect(r.report?.killed).to.equal(2);
    expect(s.windows).to.deep.equal([2000]);
    expect(s.restarts).to.deep.equal([]);
  });

  it('restarts when a kernel thread stays runnable, even at a small CPU share (a loaded host)', async () => {
    const s = steps({ killed: 0, cores: 0.05, runnable: 1 });
    expect((await sweepAfterDeadline(s.steps, policy)).outcome).to.equal('restarted');
    expect(s.restarts[0]).to.match(/kept using CPU after the execution deadline.*100% of samples/);
  });

  it('restarts when the sandbox burns CPU past the policy', async () => {
    const s = steps({ killed: 0, cores: 0.9, runnable: 0 });
    expect((await sweepAfterDeadline(s.steps, policy)).outcome).to.equal('restarted');
    expect(s.restarts[0]).to.match(/0\.90 cores/);
  });

  it('restarts when the sweep cannot run (stopped, killed, garbage)', async () => {
    const s = steps(new Error('the sandbox helper did not finish within 12 s'));
    expect((await sweepAfterDeadline(s.steps, policy)).outcome).to.equal('restarted');
    expect(s.restarts[0]).to.match(/could not be swept.*did not finish/);
  });

  it('does not restart for a failed sweep when another execution started meanwhile (its ladder may have killed the sandbox)', async () => {
    const s = steps(new Error('the sandbox stopped'), [
      { started: 1, busy: false },
      { started: 2, busy: false },
    ]);
    expect((await sweepAfterDeadline(s.steps, policy)).outcome).to.equal('not-judged');
    expect(s.restarts).to.deep.equal([]);
  });

  it('does not judge a window in which another execution started: its CPU is its own', async () => {
    const s = steps({ killed: 0, cores: 1, runnable: 1 }, [
      { started: 1, busy: false },
      { started: 2, busy: false },
    ]);
    expect((await sweepAfterDeadline(s.steps, policy)).outcome).to.equal('not-judged');
    const busy = steps({ killed: 0, cores: 1, runnable: 1 }, [
      { started: 1, busy: false },
      { started: 1, busy: true },
    ]);
    expect((await sweepAfterDeadline(busy.steps, policy)).outcome).to.equal('not-judged');
    expect(s.restarts.concat(busy.restarts)).to.deep.equal([]);
  });

  it('sweeps nothing when the next execution already runs (its processes are not leftovers)', async () => {
    const s = steps({ killed: 5, cores: 1, runnable: 1 }, [{ started: 2, busy: true }]);
    expect((await sweepAfterDeadline(s.steps, policy)).outcome).to.equal('not-judged');
    expect(s.windows, 'no sweep ran').to.deep.equal([]);
    expect(s.restarts).to.deep.equal([]);
  });
});
