/**
 * Round trip of a `pass` execution (execute_request → execute_reply), four series interleaved in
 * blocks in one run:
 *   - through our gateway's WebSocket (v1) to a sandboxed kernel,
 *   - direct ZeroMQ (ipc) to that same kernel (the gateway's added latency is the difference),
 *   - through Jupyter Server's WebSocket (v1, as it selects when offered) to a local kernel,
 *   - direct ZeroMQ (tcp on 127.0.0.1) to that same local kernel.
 * Usage: npx tsx bench/round-trip.ts   (BENCH_N, default 500 per series)
 * AIDO_CPU_LIMIT=2 gives the sandbox more CPU (the default 0.5 throttles it: see the throttled
 * column); BENCH_JUPYTER_NODELAY=1 starts Jupyter Server with TCP_NODELAY on its WebSockets.
 * The gateway runs as a child process; its CPU per round trip (utime + stime from /proc, 10 ms
 * ticks summed over every block of a series, less what the idle gateway burns in that time) is
 * reported beside the latencies.
 */
import { directShell } from './direct-shell.js';
import { BENCH_IMAGE, startGatewayProcess } from './gateway-process.js';
import { NODELAY_CONFIG, startJupyterServer } from './jupyter-server-process.js';
import { KernelWs } from './kernel-client.js';
import { cpuThrottling, printTable, processCpuMs, progress, summarize } from './stats.js';

const N = Number(process.env.BENCH_N ?? 500);
if (!Number.isInteger(N) || N < 1 || N > 100_000) throw new Error('BENCH_N must be 1..100000');
const BLOCK = 50;
/** The sandbox's CPU quota (the gateway reads AIDO_CPU_LIMIT from the environment it inherits). */
const SANDBOX_CPUS = Number(process.env.AIDO_CPU_LIMIT ?? 0.5);
const JS_NODELAY = process.env.BENCH_JUPYTER_NODELAY === '1';
async function main(): Promise<void> {
  progress('starting the gateway (no pool: a quiet machine) and one sandboxed kernel');
  const gw = await startGatewayProcess({ AIDO_POOL_SIZE: '0' });
  let js: Awaited<ReturnType<typeof startJupyterServer>> | undefined;
  const closers: (() => Promise<void> | void)[] = [];
  try {
    const res = await gw.api('/api/kernels', { method: 'POST', body: '{}' });
    if (res.status !== 201) throw new Error(`POST /api/kernels: ${res.status} ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    const conn = await gw.kernelConnection(id);

    progress(
      `starting Jupyter Server${JS_NODELAY ? ' (TCP_NODELAY patch)' : ''} and one local kernel`,
    );
    js = await startJupyterServer(JS_NODELAY ? { configPy: NODELAY_CONFIG } : {});
    const jsRes = await js.api('/api/kernels', { method: 'POST', body: '{"name":"python3"}' });
    if (!jsRes.ok) throw new Error(`Jupyter Server POST /api/kernels: ${jsRes.status}`);
    const { id: jsId } = (await jsRes.json()) as { id: string };
    const jsConn = js.connectionFile(jsId);
    if (jsConn.transport !== 'tcp' || jsConn.ip !== '127.0.0.1')
      throw new Error(`local kernel not on tcp 127.0.0.1: ${jsConn.transport} ${jsConn.ip}`);

    const gwWs = await KernelWs.open({
      wsBase: gw.wsBase,
      kernelId: id,
      token: gw.token,
      framing: 'v1',
      session: 'bench-ws',
    });
    closers.push(() => gwWs.close());
    const jsWs = await KernelWs.open({
      wsBase: js.wsBase,
      kernelId: jsId,
      token: js.token,
      framing: 'v1',
      session: 'bench-js-ws',
    });
    closers.push(() => jsWs.close());
    const gwDirect = directShell(`ipc://${conn.dir}/k-1`, conn.key, 'bench-direct');
    closers.push(() => {
      gwDirect.close();
    });
    const jsDirect = directShell(
      `tcp://127.0.0.1:${jsConn.shell_port}`,
      jsConn.key,
      'bench-js-direct',
    );
    closers.push(() => {
      jsDirect.close();
    });

    const series = [
      { name: 'gateway WebSocket (v1)', run: async () => (await gwWs.execute('pass')).replyMs },
      { name: 'direct ZeroMQ (gateway kernel)', run: () => gwDirect.once() },
      {
        name: 'Jupyter Server WebSocket (v1)',
        run: async () => (await jsWs.execute('pass')).replyMs,
      },
      { name: 'direct ZeroMQ (local kernel)', run: () => jsDirect.once() },
    ];
    progress('warming up (30 per series)');
    for (let i = 0; i < 30; i++) for (const s of series) await s.run();
    const samples = series.map(() => [] as number[]);
    // CFS throttling of the sandboxed kernel (0.5 CPU by default), counted per series' blocks.
    const throttledPeriods = series.map(() => 0);
    const throttledMs = series.map(() => 0);
    const throttlingKnown = cpuThrottling(conn.containerId) !== undefined;
    // CPU of the gateway process (a child: /proc/<pid>/stat) during each series' blocks. The
    // direct series cost it something too: it decodes the kernel's iopub and forwards it to the
    // attached WebSocket client.
    const gatewayCpuMs = series.map(() => 0);
    const cpuKnown = processCpuMs(gw.pid) !== undefined;
    // What the gateway burns with no traffic at all (timers, Docker event streams), per second:
    // subtracted below, so a slow round trip on a loaded machine does not look like bridge cost.
    // Measured for 3 s before and after the series; the lower of the two (start-up work can
    // linger into the first), so the net figure errs high rather than low.
    const idleCpu = async (): Promise<number | undefined> => {
      const c0 = processCpuMs(gw.pid);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 3000));
      const c1 = processCpuMs(gw.pid);
      return c0 === undefined || c1 === undefined
        ? undefined
        : ((c1 - c0) * 1000) / (performance.now() - t0);
    };
    const idleBefore = await idleCpu();
    const seriesMs = series.map(() => 0);
    progress(`measuring ${N} round trips per series, interleaved in blocks of ${BLOCK}`);
    let done = 0;
    while (done < N) {
      const count = Math.min(BLOCK, N - done);
      for (const [k, s] of series.entries()) {
        const before = cpuThrottling(conn.containerId);
        const cpuBefore = processCpuMs(gw.pid);
        const t0 = performance.now();
        for (let i = 0; i < count; i++) samples[k]!.push(await s.run());
        seriesMs[k]! += performance.now() - t0;
        const cpuAfter = processCpuMs(gw.pid);
        const after = cpuThrottling(conn.containerId);
        if (cpuBefore !== undefined && cpuAfter !== undefined)
          gatewayCpuMs[k]! += cpuAfter - cpuBefore;
        if (before && after) {
          throttledPeriods[k]! += after.throttled - before.throttled;
          throttledMs[k]! += after.throttledMs - before.throttledMs;
        }
      }
      done += count;
      if (done % 100 === 0 || done === N) progress(`${done}/${N}`);
    }
    const idleAfter = await idleCpu();
    const idleCpuMsPerS = Math.min(idleBefore ?? 0, idleAfter ?? 0);
    for (const c of closers.splice(0).reverse()) await c();

    const [sg, sd, sj, sjd] = samples.map(summarize) as [
      ReturnType<typeof summarize>,
      ReturnType<typeof summarize>,
      ReturnType<typeof summarize>,
      ReturnType<typeof summarize>,
    ];
    const diff = (a: number, b: number): number => +(a - b).toFixed(3);
    const added = { p50: diff(sg.p50, sd.p50), p99: diff(sg.p99, sd.p99) };
    const jsAdded = { p50: diff(sj.p50, sjd.p50), p99: diff(sj.p99, sjd.p99) };
    const throttle = (k: number): string =>
      throttlingKnown ? `${throttledPeriods[k]} x, ${Math.round(throttledMs[k]!)} ms` : 'n/a';
    /** Gateway CPU per round trip of series k net of its idle CPU, ms (null: /proc unreadable). */
    const cpuPer = (k: number): number | null =>
      cpuKnown
        ? +((gatewayCpuMs[k]! - (idleCpuMsPerS * seriesMs[k]!) / 1000) / N).toFixed(3)
        : null;
    const cpuCell = (k: number): string | number => cpuPer(k) ?? 'n/a';
    printTable(
      `pass round trip, ms (n=${N} each; gateway kernel: ${BENCH_IMAGE} in a sandbox, ${SANDBOX_CPUS} CPU; local kernel: Jupyter Server ${js.version}${JS_NODELAY ? ' with TCP_NODELAY' : ''}, unsandboxed)`,
      ['path', 'min', 'p50', 'p95', 'p99', 'max', 'sandbox throttled', 'gateway CPU/trip (net)'],
      [
        ['gateway WebSocket (v1)', sg.min, sg.p50, sg.p95, sg.p99, sg.max, throttle(0), cpuCell(0)],
        [
          'direct ZeroMQ (gateway kernel)',
          sd.min,
          sd.p50,
          sd.p95,
          sd.p99,
          sd.max,
          throttle(1),
          cpuCell(1),
        ],
        ['added by the gateway', '', added.p50, '', added.p99, ''],
        [
          'ratio gateway/direct',
          '',
          (sg.p50 / sd.p50).toFixed(2),
          '',
          (sg.p99 / sd.p99).toFixed(2),
          '',
        ],
        ['Jupyter Server WebSocket (v1)', sj.min, sj.p50, sj.p95, sj.p99, sj.max],
        ['direct ZeroMQ (local kernel)', sjd.min, sjd.p50, sjd.p95, sjd.p99, sjd.max],
        ['added by Jupyter Server', '', jsAdded.p50, '', jsAdded.p99, ''],
        ['gateway WS - Jupyter Server WS', '', diff(sg.p50, sj.p50), '', diff(sg.p99, sj.p99), ''],
      ],
    );
    process.stdout.write(
      `${JSON.stringify({
        bench: 'round-trip',
        n: N,
        unit: 'ms',
        image: BENCH_IMAGE,
        sandbox_cpus: SANDBOX_CPUS,
        gateway: sg,
        direct: sd,
        added,
        ratio_p50: +(sg.p50 / sd.p50).toFixed(3),
        // Gateway process CPU (user + system, ms) per round trip during each series' blocks.
        // Net of the idle gateway's own CPU (idle_ms_per_s, measured before the series).
        gateway_cpu_ms_per_trip: {
          gateway: cpuPer(0),
          direct: cpuPer(1),
          idle_ms_per_s: +idleCpuMsPerS.toFixed(2),
          gross_gateway: cpuKnown ? +(gatewayCpuMs[0]! / N).toFixed(3) : null,
        },
        jupyter_server: sj,
        jupyter_direct: sjd,
        jupyter_added: jsAdded,
        jupyter_server_version: js.version,
        jupyter_server_nodelay: JS_NODELAY,
        sandbox_cpu_throttling: throttlingKnown
          ? {
              gateway: { periods: throttledPeriods[0], ms: Math.round(throttledMs[0]!) },
              direct: { periods: throttledPeriods[1], ms: Math.round(throttledMs[1]!) },
            }
          : null,
      })}\n`,
    );
  } finally {
    for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => undefined);
    await js?.stop();
    await gw.stop();
  }
}

await main();
