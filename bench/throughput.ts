/**
 * Output throughput: one execution writes 50 MiB to stdout (50 writes of 1 MiB, each flushed) and
 * one WebSocket client receives it. Wall time is from sending the execute_request to the kernel's
 * `idle` for it; the client checks that all the bytes arrived (stream text ≥ 50 MiB).
 * Series, interleaved run by run, each on its own kernel and client:
 *   - our gateway, v1 framing (sandboxed kernel),
 *   - Jupyter Server, legacy framing (local kernel),
 *   - and for reference our gateway with legacy framing, Jupyter Server with v1.
 * Jupyter Server is started with --ServerApp.iopub_data_rate_limit=1e12: its default (1e6 bytes/s)
 * drops output; our gateway's output rate limits are set off explicitly (0).
 * Usage: npx tsx bench/throughput.ts   (BENCH_RUNS, default 3 per series; BENCH_MIB, default 50)
 */
import { BENCH_IMAGE, startGatewayProcess, type GatewayProcess } from './gateway-process.js';
import { startJupyterServer, type JupyterServerProcess } from './jupyter-server-process.js';
import { KernelWs, type WsFraming } from './kernel-client.js';
import { cpuThrottling, printTable, progress } from './stats.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const MIB = Number(process.env.BENCH_MIB ?? 50);
if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 20) throw new Error('BENCH_RUNS must be 1..20');
if (!Number.isInteger(MIB) || MIB < 1 || MIB > 500) throw new Error('BENCH_MIB must be 1..500');
const RUN_TIMEOUT_MS = 180_000;
/** The sandbox's CPU quota (the gateway reads AIDO_CPU_LIMIT from the environment it inherits). */
const SANDBOX_CPUS = Number(process.env.AIDO_CPU_LIMIT ?? 0.5);
const JS_RATE_FLAG = '--ServerApp.iopub_data_rate_limit=1e12';
const code = (mib: number): string =>
  `import sys\nfor _ in range(${mib}): sys.stdout.write('x'*(1<<20)); sys.stdout.flush()`;

interface Run {
  seconds: number;
  chars: number;
  messages: number;
  complete: boolean;
}

interface Series {
  key: string;
  name: string;
  ws: KernelWs;
  runs: Run[];
  /** The sandbox's container, for its CPU throttling counters (our gateway only). */
  containerId?: string;
  throttledMs: number;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const r2 = (x: number): number => Math.round(x * 100) / 100;

async function openKernel(
  server: GatewayProcess | JupyterServerProcess,
  framing: WsFraming,
  body: string,
): Promise<{ id: string; ws: KernelWs }> {
  const res = await server.api('/api/kernels', { method: 'POST', body });
  if (!res.ok) throw new Error(`POST /api/kernels: ${res.status} ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  const ws = await KernelWs.open({
    wsBase: server.wsBase,
    kernelId: id,
    token: server.token,
    framing,
  });
  return { id, ws };
}

async function once(ws: KernelWs, mib: number): Promise<Run> {
  const r = await ws.execute(code(mib), { untilIdle: true, timeoutMs: RUN_TIMEOUT_MS });
  if (r.status !== 'ok') throw new Error(`execute_reply status ${r.status}`);
  return {
    seconds: r.idleMs / 1000,
    chars: r.streamChars,
    messages: r.streamMessages,
    complete: r.streamChars >= mib * 1024 * 1024,
  };
}

async function main(): Promise<void> {
  let gw: GatewayProcess | undefined;
  let js: JupyterServerProcess | undefined;
  const clients: KernelWs[] = [];
  try {
    progress('starting our gateway (no pool, output rate limits off)');
    gw = await startGatewayProcess({
      AIDO_POOL_SIZE: '0',
      AIDO_IOPUB_DATA_RATE_LIMIT: '0',
      AIDO_IOPUB_MSG_RATE_LIMIT: '0',
    });
    progress(`starting Jupyter Server with ${JS_RATE_FLAG}`);
    js = await startJupyterServer({ extraArgs: [JS_RATE_FLAG] });
    progress('starting one kernel per series');
    const mk = async (
      key: string,
      name: string,
      server: GatewayProcess | JupyterServerProcess,
      framing: WsFraming,
      body: string,
    ): Promise<Series> => {
      const { id, ws } = await openKernel(server, framing, body);
      clients.push(ws);
      const s: Series = { key, name, ws, runs: [], throttledMs: 0 };
      if (server === gw) s.containerId = (await gw.kernelConnection(id)).containerId;
      return s;
    };
    const series = [
      await mk('gateway_v1', 'gateway, v1', gw, 'v1', '{}'),
      await mk('jupyter_legacy', 'Jupyter Server, legacy', js, 'legacy', '{"name":"python3"}'),
      await mk('gateway_legacy', 'gateway, legacy (reference)', gw, 'legacy', '{}'),
      await mk('jupyter_v1', 'Jupyter Server, v1 (reference)', js, 'v1', '{"name":"python3"}'),
    ];
    const versions = await series[0]!.ws.execute(
      'import sys, ipykernel; print(sys.version.split()[0], ipykernel.__version__)',
      { untilIdle: true, collectText: true },
    );
    const jsVersions = await series[1]!.ws.execute(
      'import sys, ipykernel; print(sys.version.split()[0], ipykernel.__version__)',
      { untilIdle: true, collectText: true },
    );
    progress('warm-up: 5 MiB per series');
    for (const s of series) await once(s.ws, 5);
    for (let run = 1; run <= RUNS; run++) {
      for (const s of series) {
        const before = s.containerId ? cpuThrottling(s.containerId) : undefined;
        const r = await once(s.ws, MIB);
        const after = s.containerId ? cpuThrottling(s.containerId) : undefined;
        if (before && after) s.throttledMs += after.throttledMs - before.throttledMs;
        s.runs.push(r);
        progress(
          `run ${run}/${RUNS} ${s.name}: ${r2(r.seconds)} s, ${r2(MIB / r.seconds)} MiB/s, ` +
            `${r.chars} chars in ${r.messages} messages${r.complete ? '' : ' (INCOMPLETE)'}`,
        );
      }
    }
    for (const c of clients.splice(0)) await c.close();

    const rows = series.map((s) => {
      const sec = median(s.runs.map((r) => r.seconds));
      return {
        key: s.key,
        name: s.name,
        seconds: r2(sec),
        mib_per_s: r2(MIB / sec),
        mb_per_s: r2((MIB * 1.048576) / sec),
        runs_s: s.runs.map((r) => r2(r.seconds)),
        min_chars: Math.min(...s.runs.map((r) => r.chars)),
        complete: s.runs.every((r) => r.complete),
        messages: s.runs[0]?.messages ?? 0,
        throttled:
          s.containerId && cpuThrottling(s.containerId) ? `${Math.round(s.throttledMs)} ms` : 'n/a',
        throttledMs: s.containerId ? Math.round(s.throttledMs) : null,
      };
    });
    printTable(
      `output throughput: ${MIB} MiB of stdout to one client, send -> idle, median of ${RUNS} runs` +
        ` (Jupyter Server ${js.version} with ${JS_RATE_FLAG}; 2 cores, noisy)`,
      ['series', 'median s', 'MiB/s', 'MB/s', 'runs (s)', 'all bytes', 'sandbox throttled'],
      rows.map((r) => [
        r.name,
        r.seconds,
        r.mib_per_s,
        r.mb_per_s,
        r.runs_s.join(' / '),
        r.complete ? 'yes' : `NO (${r.min_chars})`,
        r.throttled,
      ]),
    );
    process.stdout.write(
      `kernels: gateway ${versions.text.trim()} (python, ipykernel; ${SANDBOX_CPUS} CPU), local ${jsVersions.text.trim()}\n`,
    );
    process.stdout.write(
      `${JSON.stringify({
        bench: 'throughput',
        mib: MIB,
        runs: RUNS,
        image: BENCH_IMAGE,
        sandbox_cpus: SANDBOX_CPUS,
        jupyter_server_version: js.version,
        jupyter_server_flags: [JS_RATE_FLAG],
        gateway_kernel: versions.text.trim(),
        local_kernel: jsVersions.text.trim(),
        ...Object.fromEntries(
          rows.map((r) => [
            r.key,
            {
              median_s: r.seconds,
              mib_per_s: r.mib_per_s,
              mb_per_s: r.mb_per_s,
              runs_s: r.runs_s,
              complete: r.complete,
              stream_messages: r.messages,
              sandbox_throttled_ms_all_runs: r.throttledMs,
            },
          ]),
        ),
      })}\n`,
    );
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    await js?.stop().catch((e: unknown) => {
      progress(`stopping Jupyter Server: ${String(e)}`);
    });
    await gw?.stop();
  }
}

await main();
