/** The interrupt → kill ladder and the execution deadline, on fake timers (milliseconds, no sleeping). */
import { expect } from 'chai';
import { ExecutionDeadline, InterruptLadder } from '../../../gateway/deadline.js';
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
