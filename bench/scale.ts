/**
 * Scale: many idle kernels on one gateway, then latency under concurrent load.
 *   1. Starts BENCH_SCALE kernels (50 by default, or 100: first 50, then 50 more if the host's
 *      memory allows) on a gateway with AIDO_MAX_KERNELS=120 and no pool, a few at a time.
 *   2. Host memory per idle kernel: MemAvailable (/proc/meminfo) before the first kernel and after
 *      the last one (settled), divided by the count; and the sum of the containers' memory as
 *      Docker reports it (dockerode container.stats: usage, usage - inactive_file as `docker stats`
 *      shows, and rss).
 *   3. Latency: one client executes `pass` 200 times, first alone, then while 20 other clients on
 *      20 other kernels execute `sum(range(10000))` in a loop; p50/p99 of both. Each pass through
 *      the gateway is followed by one straight on that kernel's shell socket (direct ZeroMQ), so
 *      the table shows how much of the loaded latency is the gateway's and how much the kernel's.
 *   4. Deletes every kernel (and the gateway's stop removes anything left).
 * Usage: npx tsx bench/scale.ts   (BENCH_SCALE=50|100, BENCH_SCALE_CONCURRENCY default 4)
 *   BENCH_GATEWAY_CGROUP=/sys/fs/cgroup/cpu/docker/aido-bench-gw (cgroup v1, root) moves the gateway
 *   process into that cgroup (created if missing), beside the sandboxes' cgroups, as when the
 *   gateway runs as a container itself (docker-compose.secure.yml): there the sandboxes' CpuShares
 *   (AIDO_CPU_SHARES) weigh against the gateway's; in the host's root cgroup they do not.
 */
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { freemem } from 'node:os';
import Docker from 'dockerode';
import { BENCH_IMAGE, startGatewayProcess, type GatewayProcess } from './gateway-process.js';
import { directShell } from './direct-shell.js';
import { KernelWs } from './kernel-client.js';
import { printTable, progress, summarize, type Summary } from './stats.js';

const SCALE = Number(process.env.BENCH_SCALE ?? 50);
if (SCALE !== 50 && SCALE !== 100) throw new Error('BENCH_SCALE must be 50 or 100');
const CONCURRENCY = Number(process.env.BENCH_SCALE_CONCURRENCY ?? 4);
if (!Number.isInteger(CONCURRENCY) || CONCURRENCY < 1 || CONCURRENCY > 16)
  throw new Error('BENCH_SCALE_CONCURRENCY must be 1..16');
const PASSES = 200;
const LOADERS = 20;
const LOAD_CODE = 'sum(range(10000))';
/** Starting kernels stops here, whatever the count (the bench then measures what it has). */
const START_BUDGET_MS = 6 * 60_000;
const MiB = 1024 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function memInfo(): { availableMiB: number; freeMiB: number; totalMiB: number } {
  const text = readFileSync('/proc/meminfo', 'utf8');
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m?.[1]) throw new Error(`no ${key} in /proc/meminfo`);
    return Number(m[1]);
  };
  return {
    availableMiB: kb('MemAvailable') / 1024,
    freeMiB: kb('MemFree') / 1024,
    totalMiB: kb('MemTotal') / 1024,
  };
}

function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Runs fn over items, at most `limit` at a time. */
async function pool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (t: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

interface DockerMemory {
  containers: number;
  usageMiB: number;
  /** usage - inactive_file, what `docker stats` shows. */
  workingSetMiB: number;
  rssMiB: number;
}

async function dockerMemory(docker: Docker, ids: readonly string[]): Promise<DockerMemory> {
  const stats = await pool(ids, 8, async (id) =>
    docker
      .getContainer(id)
      .stats({ stream: false, 'one-shot': true })
      .catch(() => undefined),
  );
  let usage = 0;
  let working = 0;
  let rss = 0;
  let n = 0;
  for (const s of stats) {
    const m = s?.memory_stats as
      { usage?: number; stats?: Record<string, number | undefined> } | undefined;
    if (m?.usage === undefined) continue;
    n++;
    usage += m.usage;
    // cgroup v1 names it total_inactive_file, v2 inactive_file.
    const inactive = m.stats?.total_inactive_file ?? m.stats?.inactive_file ?? 0;
    working += m.usage - inactive;
    rss += m.stats?.total_rss ?? m.stats?.anon ?? 0;
  }
  return { containers: n, usageMiB: usage / MiB, workingSetMiB: working / MiB, rssMiB: rss / MiB };
}

async function startKernels(
  gw: GatewayProcess,
  count: number,
  deadline: number,
): Promise<{ ids: string[]; failures: number; ms: number }> {
  const t0 = performance.now();
  const ids: string[] = [];
  let failures = 0;
  await pool(
    Array.from({ length: count }, (_, i) => i),
    CONCURRENCY,
    async () => {
      if (Date.now() > deadline || failures > 5) return;
      const res = await gw
        .api('/api/kernels', { method: 'POST', body: '{}' })
        .catch(() => undefined);
      if (res?.status !== 201) {
        failures++;
        progress(`a start failed: ${res?.status ?? 'no answer'} ${(await res?.text()) ?? ''}`);
        return;
      }
      ids.push(((await res.json()) as { id: string }).id);
      if (ids.length % 10 === 0) progress(`${ids.length} kernels`);
    },
  );
  return { ids, failures, ms: performance.now() - t0 };
}

interface Checkpoint {
  kernels: number;
  startSeconds: number;
  memAvailableDropMiB: number;
  perKernelHostMiB: number;
  kernelsPerGiB: number;
  docker: DockerMemory;
  perKernelDockerWorkingSetMiB: number;
  gatewayRssMiB: number;
}

async function settleAndMeasure(
  gw: GatewayProcess,
  docker: Docker,
  before: number,
  kernels: number,
  startMs: number,
): Promise<Checkpoint> {
  progress(`${kernels} kernels up; letting them settle for 10 s`);
  await sleep(10_000);
  const after = memInfo().availableMiB;
  const dm = await dockerMemory(docker, await gw.containers());
  const drop = before - after;
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  return {
    kernels,
    startSeconds: r1(startMs / 1000),
    memAvailableDropMiB: Math.round(drop),
    perKernelHostMiB: r1(drop / kernels),
    kernelsPerGiB: r1(1024 / (drop / kernels)),
    docker: {
      containers: dm.containers,
      usageMiB: Math.round(dm.usageMiB),
      workingSetMiB: Math.round(dm.workingSetMiB),
      rssMiB: Math.round(dm.rssMiB),
    },
    perKernelDockerWorkingSetMiB: r1(dm.workingSetMiB / Math.max(1, dm.containers)),
    gatewayRssMiB: Math.round(rssMiB(gw.pid)),
  };
}

/**
 * `n` passes through the gateway, each followed by one straight on the kernel's shell socket
 * (interleaved, so both series see the same load): the difference is the gateway's share.
 */
async function measurePasses(
  ws: KernelWs,
  direct: { once(): Promise<number> },
  n: number,
): Promise<{ gateway: Summary; direct: Summary }> {
  const gateway: number[] = [];
  const straight: number[] = [];
  for (let i = 0; i < n; i++) {
    gateway.push((await ws.execute('pass', { timeoutMs: 60_000 })).replyMs);
    straight.push(await direct.once());
  }
  return { gateway: summarize(gateway), direct: summarize(straight) };
}

function row(name: string, s: Summary): (string | number)[] {
  return [name, s.min, s.p50, s.p95, s.p99, s.max];
}

async function main(): Promise<void> {
  const docker = new Docker({
    socketPath: process.env.AIDO_DOCKER_SOCKET ?? '/var/run/docker.sock',
  });
  await docker.getImage(BENCH_IMAGE).inspect();
  const startMem = memInfo();
  // A generous guess before anything runs (an idle sandboxed kernel is well under 150 MiB).
  const guessMiB = 50 * 150 + 2048;
  if (startMem.availableMiB < guessMiB)
    throw new Error(
      `only ${Math.round(startMem.availableMiB)} MiB available; 50 kernels want ~${guessMiB}`,
    );

  progress('starting the gateway (AIDO_MAX_KERNELS=120, AIDO_POOL_SIZE=0)');
  const gw = await startGatewayProcess({ AIDO_MAX_KERNELS: '120', AIDO_POOL_SIZE: '0' });
  const cgroup = process.env.BENCH_GATEWAY_CGROUP;
  if (cgroup) {
    mkdirSync(cgroup, { recursive: true });
    writeFileSync(`${cgroup}/cgroup.procs`, String(gw.pid));
    progress(`the gateway (pid ${gw.pid}) runs in ${cgroup}`);
  }
  const clients: KernelWs[] = [];
  let ids: string[] = [];
  const checkpoints: Checkpoint[] = [];
  const notes: string[] = [];
  let failures = 0;
  try {
    await sleep(3000);
    const before = memInfo().availableMiB;
    const gwRssBefore = rssMiB(gw.pid);
    const deadline = Date.now() + START_BUDGET_MS;
    progress(`starting 50 kernels, ${CONCURRENCY} at a time`);
    const first = await startKernels(gw, 50, deadline);
    ids = first.ids;
    failures += first.failures;
    checkpoints.push(await settleAndMeasure(gw, docker, before, ids.length, first.ms));
    if (SCALE === 100) {
      const per = checkpoints[0]!.perKernelHostMiB;
      const need = 50 * per * 1.5 + 2048;
      const avail = memInfo().availableMiB;
      progress(
        `for 50 more: need ~${Math.round(need)} MiB (1.5 x ${per} MiB per kernel + 2 GiB), ` +
          `available ${Math.round(avail)} MiB (os.freemem ${Math.round(freemem() / MiB)} MiB)`,
      );
      if (avail < need) {
        notes.push(`stopped at ${ids.length} kernels: not enough memory for 100`);
      } else if (Date.now() > deadline) {
        notes.push(`stopped at ${ids.length} kernels: start budget spent`);
      } else {
        const more = await startKernels(gw, 50, deadline);
        ids.push(...more.ids);
        failures += more.failures;
        checkpoints.push(
          await settleAndMeasure(gw, docker, before, ids.length, first.ms + more.ms),
        );
      }
    }
    if (failures > 0) notes.push(`${failures} kernel start(s) failed`);
    if (ids.length < LOADERS + 1) throw new Error(`only ${ids.length} kernels started`);

    progress('opening 21 clients');
    for (const id of ids.slice(0, LOADERS + 1)) {
      clients.push(
        await KernelWs.open({ wsBase: gw.wsBase, kernelId: id, token: gw.token, framing: 'v1' }),
      );
    }
    const [probe, ...loaders] = clients as [KernelWs, ...KernelWs[]];
    const conn = await gw.kernelConnection(ids[0]!);
    const direct = directShell(`ipc://${conn.dir}/k-1`, conn.key, 'bench-scale-direct');
    for (let i = 0; i < 20; i++) await probe.execute('pass');
    progress(`${PASSES} pass round trips, alone`);
    const alone = await measurePasses(probe, direct, PASSES);

    progress(`${PASSES} pass round trips while ${LOADERS} clients loop ${LOAD_CODE}`);
    let stop = false;
    let loadExecs = 0;
    const loops = loaders.map(async (ws) => {
      while (!stop) {
        await ws.execute(LOAD_CODE, { timeoutMs: 60_000 });
        loadExecs++;
      }
    });
    await sleep(1000);
    const execsAtStart = loadExecs;
    const tl = performance.now();
    const loaded = await measurePasses(probe, direct, PASSES);
    const loadSeconds = (performance.now() - tl) / 1000;
    const loadRate = (loadExecs - execsAtStart) / loadSeconds;
    stop = true;
    await Promise.all(loops);
    direct.close();
    for (const c of clients.splice(0)) await c.close();

    progress(`deleting ${ids.length} kernels`);
    const td = performance.now();
    await pool(ids, 8, async (id) => {
      const r = await gw.api(`/api/kernels/${id}`, { method: 'DELETE' }).catch(() => undefined);
      if (r?.status !== 204) progress(`DELETE ${id}: ${r?.status ?? 'no answer'}`);
    });
    const deleteSeconds = Math.round((performance.now() - td) / 100) / 10;
    const left = (await gw.containers()).length;
    if (left > 0) notes.push(`${left} container(s) left after the DELETEs (removed by stop)`);
    ids = [];

    printTable(
      `idle kernels (no pool; ${BENCH_IMAGE}, 512 MiB / 0.5 CPU limits; host ${Math.round(startMem.totalMiB)} MiB, 2 cores, noisy)`,
      [
        'kernels',
        'start s',
        'MemAvailable drop MiB',
        'host MiB/kernel',
        'kernels/GiB',
        'docker usage MiB',
        'docker stats MiB',
        'docker rss MiB',
        'docker MiB/kernel',
        'gateway RSS MiB',
      ],
      checkpoints.map((c) => [
        c.kernels,
        c.startSeconds,
        c.memAvailableDropMiB,
        c.perKernelHostMiB,
        c.kernelsPerGiB,
        c.docker.usageMiB,
        c.docker.workingSetMiB,
        c.docker.rssMiB,
        c.perKernelDockerWorkingSetMiB,
        c.gatewayRssMiB,
      ]),
    );
    process.stdout.write(`(gateway RSS with no kernel: ${Math.round(gwRssBefore)} MiB)\n`);
    const total = checkpoints.at(-1)!.kernels;
    printTable(
      `pass round trip on one kernel, ms (n=${PASSES}; ${total} kernels running)`,
      ['condition', 'min', 'p50', 'p95', 'p99', 'max'],
      [
        row('alone, through the gateway', alone.gateway),
        row('alone, direct ZeroMQ', alone.direct),
        row(`${LOADERS} clients looping ${LOAD_CODE}, through the gateway`, loaded.gateway),
        row(`${LOADERS} clients looping ${LOAD_CODE}, direct ZeroMQ`, loaded.direct),
      ],
    );
    process.stdout.write(
      `load: ${Math.round(loadRate)} executions/s across the ${LOADERS} loaders; deleting ${total} kernels took ${deleteSeconds} s\n`,
    );
    for (const n of notes) process.stdout.write(`note: ${n}\n`);
    process.stdout.write(
      `${JSON.stringify({
        bench: 'scale',
        requested: SCALE,
        kernels: total,
        image: BENCH_IMAGE,
        concurrency: CONCURRENCY,
        host_mem_total_mib: Math.round(startMem.totalMiB),
        gateway_rss_idle_mib: Math.round(gwRssBefore),
        checkpoints,
        round_trip_ms: {
          alone: alone.gateway,
          loaded: loaded.gateway,
          alone_direct: alone.direct,
          loaded_direct: loaded.direct,
          loaders: LOADERS,
          load_code: LOAD_CODE,
        },
        load_execs_per_s: Math.round(loadRate),
        delete_s: deleteSeconds,
        notes,
      })}\n`,
    );
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    if (ids.length > 0) {
      progress(`cleaning up ${ids.length} kernels`);
      await pool(ids, 8, (id) =>
        gw.api(`/api/kernels/${id}`, { method: 'DELETE' }).catch(() => undefined),
      );
    }
    await gw.stop();
    // Empty once the gateway is gone; a cgroup with tasks left is not removed.
    if (cgroup) rmdirSync(cgroup);
  }
}

await main();
