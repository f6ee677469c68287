/**
 * Docker stats readings as the console shows them: memory as `docker stats` counts it (cgroup v1
 * and v2), CPU as the rate between two readings, a deadline on slow answers, one round shared.
 * The Docker client here is a stand-in answering with recorded shapes; the real daemon is in the
 * browser test.
 */
import { expect } from 'chai';
import type Docker from 'dockerode';
import { parseDockerStats, SandboxStats } from '../../../gateway/runtime/sandbox-stats.js';

function reading(readIso: string, usageNs: number, memory: number, v2 = true): unknown {
  return {
    read: readIso,
    cpu_stats: { cpu_usage: { total_usage: usageNs } },
    memory_stats: {
      usage: memory,
      limit: 200 * 2 ** 20,
      stats: v2 ? { inactive_file: 2 ** 20 } : { total_inactive_file: 2 ** 20 },
    },
  };
}

/** A stand-in with only getContainer(id).stats(opts), answering from `answer`. */
function dockerAnswering(answer: (id: string, signal: AbortSignal) => Promise<unknown>): {
  docker: Docker;
  calls: string[];
} {
  const calls: string[] = [];
  const docker = {
    getContainer: (id: string) => ({
      stats: (opts: { abortSignal: AbortSignal }) => {
        calls.push(id);
        return answer(id, opts.abortSignal);
      },
    }),
  } as unknown as Docker;
  return { docker, calls };
}

describe('sandbox stats', () => {
  it('counts memory without inactive page cache, on cgroup v2 and v1', () => {
    for (const v2 of [true, false]) {
      const s = parseDockerStats(reading('2026-01-01T00:00:00Z', 5, 50 * 2 ** 20, v2));
      expect(s?.memory).to.equal(49 * 2 ** 20);
      expect(s?.limit).to.equal(200 * 2 ** 20);
    }
  });

  it('refuses a reading of another shape', () => {
    expect(parseDockerStats({})).to.equal(undefined);
    expect(parseDockerStats({ read: 'x', cpu_stats: {}, memory_stats: {} })).to.equal(undefined);
    expect(parseDockerStats('nope')).to.equal(undefined);
  });

  it('reports CPU as cores used between two rounds (none on the first)', async () => {
    let round = 0;
    const { docker } = dockerAnswering(() => {
      round++;
      // 0.25 s of CPU time over 1 s of wall time: a quarter of a core.
      return Promise.resolve(
        round === 1
          ? reading('2026-01-01T00:00:00Z', 1e9, 10 * 2 ** 20)
          : reading('2026-01-01T00:00:01Z', 1.25e9, 10 * 2 ** 20),
      );
    });
    const stats = new SandboxStats(docker);
    const first = await stats.read(['c1']);
    expect(first.stats[0]?.cpu_cores).to.equal(null);
    const second = await stats.read(['c1']);
    expect(second.stats[0]?.cpu_cores).to.be.closeTo(0.25, 1e-9);
  });

  it('answers by its deadline, naming the sandboxes Docker did not answer for', async () => {
    const { docker } = dockerAnswering(
      (id, signal) =>
        new Promise((resolve, reject) => {
          if (id === 'fast') resolve(reading('2026-01-01T00:00:00Z', 1, 2 ** 21));
          signal.addEventListener('abort', () => {
            reject(new Error('aborted'));
          });
        }),
    );
    const report = await new SandboxStats(docker, 50).read(['fast', 'slow']);
    expect(report.stats.map((s) => s.container_id)).to.deep.equal(['fast']);
    expect(report.missing).to.deep.equal(['slow']);
  });

  it('shares one round among concurrent callers', async () => {
    const { docker, calls } = dockerAnswering(() =>
      Promise.resolve(reading('2026-01-01T00:00:00Z', 1, 2 ** 21)),
    );
    const stats = new SandboxStats(docker);
    const [a, b] = await Promise.all([stats.read(['c1']), stats.read(['c1'])]);
    expect(a).to.equal(b);
    expect(calls).to.deep.equal(['c1']);
  });
});
