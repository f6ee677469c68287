/** The idle culler: the decision rules, and the checking loop on a fake clock (milliseconds, no sleeping). */
import { expect } from 'chai';
import { FakeClock } from '../../helpers/fake-clock.js';
import {
  Culler,
  cullVerdict,
  type CullCandidate,
  type CullPolicy,
} from '../../../gateway/kernel/culler.js';
import type { ExecutionState } from '../../../gateway/kernel/kernel.js';

class FakeKernel implements CullCandidate {
  lastActivity: Date;
  constructor(
    readonly id: string,
    clock: FakeClock,
    public executionState: ExecutionState = 'idle',
    public connections = 0,
  ) {
    this.lastActivity = new Date(clock.now);
  }
}

const POLICY: CullPolicy = { idleTimeoutMs: 1000, connected: false, busy: false };

function kernelAt(
  state: ExecutionState,
  idleMs: number,
  connections = 0,
): { k: CullCandidate; now: number } {
  const now = 5_000_000;
  return {
    k: { id: 'k', executionState: state, lastActivity: new Date(now - idleMs), connections },
    now,
  };
}

describe('cullVerdict', () => {
  it('never culls when the idle timeout is 0 (the default: off)', () => {
    const { k, now } = kernelAt('idle', 1e9);
    expect(cullVerdict(k, { ...POLICY, idleTimeoutMs: 0 }, now)).to.deep.equal({
      cull: false,
      why: 'disabled',
    });
  });

  it('culls an idle, unconnected kernel once idle for the timeout, not a millisecond before', () => {
    expect(cullVerdict(kernelAt('idle', 999).k, POLICY, kernelAt('idle', 999).now)).to.deep.equal({
      cull: false,
      why: 'active',
    });
    const { k, now } = kernelAt('idle', 1000);
    expect(cullVerdict(k, POLICY, now)).to.deep.equal({ cull: true, idleMs: 1000 });
  });

  it('spares a kernel with a connected client unless cull_connected', () => {
    const { k, now } = kernelAt('idle', 5000, 1);
    expect(cullVerdict(k, POLICY, now)).to.deep.equal({ cull: false, why: 'connected' });
    expect(cullVerdict(k, { ...POLICY, connected: true }, now)).to.deep.equal({
      cull: true,
      idleMs: 5000,
    });
  });

  it('spares a busy kernel unless cull_busy', () => {
    const { k, now } = kernelAt('busy', 5000);
    expect(cullVerdict(k, POLICY, now)).to.deep.equal({ cull: false, why: 'busy' });
    expect(cullVerdict(k, { ...POLICY, busy: true }, now).cull).to.equal(true);
  });

  it('needs both flags for a busy kernel with a client', () => {
    const { k, now } = kernelAt('busy', 5000, 2);
    expect(cullVerdict(k, { ...POLICY, busy: true }, now).cull).to.equal(false);
    expect(cullVerdict(k, { ...POLICY, connected: true }, now).cull).to.equal(false);
    expect(cullVerdict(k, { ...POLICY, busy: true, connected: true }, now).cull).to.equal(true);
  });

  it('never culls a kernel that is starting or restarting', () => {
    for (const state of ['starting', 'restarting'] as const) {
      const { k, now } = kernelAt(state, 1e9);
      expect(cullVerdict(k, { idleTimeoutMs: 1, connected: true, busy: true }, now)).to.deep.equal({
        cull: false,
        why: 'transitioning',
      });
    }
  });

  it('culls a dead kernel even with a client attached, counting from its death', () => {
    const { k, now } = kernelAt('dead', 60_000, 1);
    // Died 500 ms ago after a minute of quiet: its clients still have time to read why.
    expect(cullVerdict(k, POLICY, now, now - 500)).to.deep.equal({ cull: false, why: 'active' });
    expect(cullVerdict(k, POLICY, now, now - 1000)).to.deep.equal({ cull: true, idleMs: 1000 });
  });
});

describe('Culler', () => {
  function setup(policy: Partial<CullPolicy> = {}): {
    clock: FakeClock;
    kernels: Map<string, FakeKernel>;
    culled: { id: string; idleMs: number }[];
    culler: Culler;
  } {
    const clock = new FakeClock(1_000_000);
    const kernels = new Map<string, FakeKernel>();
    const culled: { id: string; idleMs: number }[] = [];
    const culler = new Culler({
      policy: { ...POLICY, ...policy },
      intervalMs: 100,
      kernels: () => kernels.values(),
      cull: (k, idleMs) => {
        kernels.delete(k.id);
        culled.push({ id: k.id, idleMs });
        return Promise.resolve();
      },
      now: () => clock.now,
      timers: clock,
    });
    return { clock, kernels, culled, culler };
  }

  it('culls an idle kernel at the first check after the timeout, and only it', async () => {
    const { clock, kernels, culled, culler } = setup();
    kernels.set('idle', new FakeKernel('idle', clock));
    kernels.set('connected', new FakeKernel('connected', clock, 'idle', 1));
    kernels.set('busy', new FakeKernel('busy', clock, 'busy'));
    culler.start();
    await clock.advance(950);
    expect(culled, 'nothing before the timeout').to.deep.equal([]);
    await clock.advance(100);
    expect(culled).to.deep.equal([{ id: 'idle', idleMs: 1000 }]);
    expect([...kernels.keys()]).to.deep.equal(['connected', 'busy']);
    await culler.stop();
  });

  it('restarts the idle clock on activity', async () => {
    const { clock, kernels, culled, culler } = setup();
    const k = new FakeKernel('k', clock);
    kernels.set('k', k);
    culler.start();
    await clock.advance(800);
    k.lastActivity = new Date(clock.now);
    await clock.advance(900);
    expect(culled).to.deep.equal([]);
    await clock.advance(200);
    expect(culled.map((c) => c.id)).to.deep.equal(['k']);
    await culler.stop();
  });

  it('culls a kernel left dead once it has been dead for the timeout', async () => {
    const { clock, kernels, culled, culler } = setup();
    const k = new FakeKernel('k', clock, 'idle', 1);
    kernels.set('k', k);
    culler.start();
    await clock.advance(5000);
    expect(culled, 'connected: spared while alive').to.deep.equal([]);
    k.executionState = 'dead';
    await clock.advance(900);
    expect(culled, 'dead for less than the timeout').to.deep.equal([]);
    await clock.advance(300);
    expect(culled.map((c) => c.id)).to.deep.equal(['k']);
    await culler.stop();
  });

  it('forgets a death when the kernel is restarted', async () => {
    const { clock, kernels, culled, culler } = setup({ idleTimeoutMs: 1000 });
    const k = new FakeKernel('k', clock, 'dead', 1);
    kernels.set('k', k);
    culler.start();
    await clock.advance(500);
    k.executionState = 'idle';
    await clock.advance(300);
    k.executionState = 'dead';
    await clock.advance(800);
    // Seen dead again 200 ms ago: the first death no longer counts.
    expect(culled).to.deep.equal([]);
    await clock.advance(500);
    expect(culled.map((c) => c.id)).to.deep.equal(['k']);
    await culler.stop();
  });

  it('does nothing and schedules nothing when culling is off', async () => {
    const { clock, kernels, culled, culler } = setup({ idleTimeoutMs: 0 });
    kernels.set('k', new FakeKernel('k', clock));
    culler.start();
    expect(clock.pending).to.equal(0);
    await clock.advance(10_000, 1000);
    expect(culled).to.deep.equal([]);
    expect(await culler.check()).to.deep.equal([]);
  });

  it('stops: no check runs after stop()', async () => {
    const { clock, kernels, culled, culler } = setup();
    kernels.set('k', new FakeKernel('k', clock));
    culler.start();
    await clock.advance(500);
    await culler.stop();
    expect(clock.pending, 'timer cleared').to.equal(0);
    await clock.advance(5000, 100);
    expect(culled).to.deep.equal([]);
  });

  it('carries on when one cull fails, and never runs two checks at once', async () => {
    const clock = new FakeClock(1_000_000);
    const kernels = new Map<string, FakeKernel>([
      ['a', new FakeKernel('a', clock)],
      ['b', new FakeKernel('b', clock)],
    ]);
    let release: () => void = () => undefined;
    const attempts: string[] = [];
    const culler = new Culler({
      policy: POLICY,
      intervalMs: 100,
      kernels: () => kernels.values(),
      cull: (k) => {
        attempts.push(k.id);
        kernels.delete(k.id);
        if (k.id === 'a') return Promise.reject(new Error('docker went away'));
        return new Promise<void>((resolve) => {
          release = resolve;
        });
      },
      now: () => clock.now,
      timers: clock,
    });
    clock.now += 2000;
    const first = culler.check();
    expect(culler.check(), 'a second caller joins the check under way').to.equal(first);
    release();
    expect(await first).to.deep.equal(['a', 'b']);
    expect(attempts).to.deep.equal(['a', 'b']);
  });
});
