/**
 * Kernel start as a client sees it: POST /api/kernels → channels WebSocket (v1) → the first
 * execute_reply of `pass`. Three series in one run, interleaved start by start:
 *   - our gateway with a warm pool (AIDO_POOL_SIZE=2); before each start the bench waits until
 *     GET /api/security/health reports the pool full again, so each start is a warm take,
 *   - our gateway without a pool (AIDO_POOL_SIZE=0): a cold sandbox per start,
 *   - Jupyter Server starting a local, unsandboxed ipykernel.
 * Every kernel is deleted right after it is measured (not timed).
 * Usage: npx tsx bench/start.ts   (BENCH_STARTS, default 20 per series)
 */
import { BENCH_IMAGE, startGatewayProcess, type GatewayProcess } from './gateway-process.js';
import { startJupyterServer, type JupyterServerProcess } from './jupyter-server-process.js';
import { KernelWs } from './kernel-client.js';
import { printTable, progress, summarize, type Summary } from './stats.js';

const STARTS = Number(process.env.BENCH_STARTS ?? 20);
if (!Number.isInteger(STARTS) || STARTS < 1 || STARTS > 500)
  throw new Error('BENCH_STARTS must be 1..500');
const POOL_SIZE = 2;
const STEP_TIMEOUT_MS = 90_000;

interface Server {
  wsBase: string;
  token: string;
  api(p: string, init?: RequestInit): Promise<Response>;
}

interface StartSample {
  totalMs: number;
  postMs: number;
  wsOpenMs: number;
  executeMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.now();

/** POST → WS open → execute `pass` → execute_reply; then deletes the kernel (untimed). */
async function startOnce(server: Server, body: string): Promise<StartSample> {
  const t0 = now();
  const res = await server.api('/api/kernels', { method: 'POST', body });
  if (res.status !== 201 && res.status !== 200)
    throw new Error(`POST /api/kernels: ${res.status} ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  const t1 = now();
  let ws: KernelWs | undefined;
  try {
    ws = await KernelWs.open({
      wsBase: server.wsBase,
      kernelId: id,
      token: server.token,
      framing: 'v1',
      timeoutMs: STEP_TIMEOUT_MS,
    });
    const t2 = now();
    const r = await ws.execute('pass', { timeoutMs: STEP_TIMEOUT_MS });
    const t3 = now();
    if (r.status !== 'ok') throw new Error(`execute_reply status ${r.status}`);
    return { totalMs: t3 - t0, postMs: t1 - t0, wsOpenMs: t2 - t1, executeMs: t3 - t2 };
  } finally {
    await ws?.close();
    const del = await server.api(`/api/kernels/${id}`, { method: 'DELETE' });
    if (del.status !== 204) progress(`warning: DELETE /api/kernels/${id}: ${del.status}`);
  }
}

/** Waits until the gateway's pool holds `size` ready sandboxes (and none starting). */
async function poolFull(gw: GatewayProcess, size: number): Promise<number> {
  const t0 = now();
  const deadline = t0 + STEP_TIMEOUT_MS;
  for (;;) {
    const health = (await (await gw.api('/api/security/health')).json()) as {
      pool?: { ready?: number; starting?: number };
    };
    if ((health.pool?.ready ?? 0) >= size && (health.pool?.starting ?? 0) === 0) return now() - t0;
    if (now() > deadline) throw new Error(`the pool did not refill within ${STEP_TIMEOUT_MS} ms`);
    await sleep(100);
  }
}

const r0 = (x: number): number => Math.round(x);
const r1 = (x: number): number => Math.round(x * 10) / 10;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  let pooled: GatewayProcess | undefined;
  let cold: GatewayProcess | undefined;
  let js: JupyterServerProcess | undefined;
  try {
    progress(`starting our gateway with AIDO_POOL_SIZE=${POOL_SIZE}`);
    pooled = await startGatewayProcess({ AIDO_POOL_SIZE: String(POOL_SIZE) });
    progress('starting our gateway with AIDO_POOL_SIZE=0');
    cold = await startGatewayProcess({ AIDO_POOL_SIZE: '0' });
    progress('starting Jupyter Server');
    js = await startJupyterServer();
    progress(`Jupyter Server ${js.version}, python3 kernelspec: ${js.kernelspec}`);
    progress('waiting for the pool to fill');
    await poolFull(pooled, POOL_SIZE);

    // One unmeasured start per series (first-time imports, page cache, JIT of our own code).
    progress('warm-up: one unmeasured start per series');
    await startOnce(pooled, '{}');
    await poolFull(pooled, POOL_SIZE);
    await startOnce(cold, '{}');
    await startOnce(js, '{"name":"python3"}');

    const series = {
      pool: [] as StartSample[],
      cold: [] as StartSample[],
      jupyter: [] as StartSample[],
    };
    const refillMs: number[] = [];
    for (let i = 0; i < STARTS; i++) {
      series.pool.push(await startOnce(pooled, '{}'));
      // Refill before anything else is measured: a container start competes for the 2 cores.
      refillMs.push(await poolFull(pooled, POOL_SIZE));
      series.cold.push(await startOnce(cold, '{}'));
      series.jupyter.push(await startOnce(js, '{"name":"python3"}'));
      progress(
        `${i + 1}/${STARTS}: pool ${r0(series.pool.at(-1)!.totalMs)} ms, ` +
          `no pool ${r0(series.cold.at(-1)!.totalMs)} ms, ` +
          `Jupyter Server ${r0(series.jupyter.at(-1)!.totalMs)} ms`,
      );
    }

    const names = {
      pool: `gateway, warm pool (${POOL_SIZE})`,
      cold: 'gateway, no pool',
      jupyter: 'Jupyter Server, local kernel',
    } as const;
    const keys = ['pool', 'cold', 'jupyter'] as const;
    const totals: Record<string, Summary> = {};
    for (const k of keys) totals[k] = summarize(series[k].map((s) => s.totalMs));
    printTable(
      `start: POST /api/kernels -> first execute_reply of pass, ms (${STARTS} starts per series; 2 cores, noisy)`,
      ['series', 'min', 'p50', 'median', 'p95', 'max'],
      keys.map((k) => {
        const s = totals[k]!;
        const med = median(series[k].map((x) => x.totalMs));
        return [names[k], r0(s.min), r0(s.p50), r0(med), r0(s.p95), r0(s.max)];
      }),
    );
    printTable(
      'where the time goes (medians, ms)',
      ['series', 'POST', 'WS open', 'execute pass'],
      keys.map((k) => [
        names[k],
        r1(median(series[k].map((s) => s.postMs))),
        r1(median(series[k].map((s) => s.wsOpenMs))),
        r1(median(series[k].map((s) => s.executeMs))),
      ]),
    );
    process.stdout.write(
      `${JSON.stringify({
        bench: 'start',
        starts: STARTS,
        unit: 'ms',
        image: BENCH_IMAGE,
        jupyter_server_version: js.version,
        pool_size: POOL_SIZE,
        pool_refill_ms_median: r0(median(refillMs)),
        ...Object.fromEntries(
          keys.map((k) => [
            k,
            {
              ...totals[k],
              median: r1(median(series[k].map((s) => s.totalMs))),
              post_ms_median: r1(median(series[k].map((s) => s.postMs))),
              ws_open_ms_median: r1(median(series[k].map((s) => s.wsOpenMs))),
              execute_ms_median: r1(median(series[k].map((s) => s.executeMs))),
              samples: series[k].map((s) => r0(s.totalMs)),
            },
          ]),
        ),
      })}\n`,
    );
  } finally {
    await js?.stop().catch((e: unknown) => {
      progress(`stopping Jupyter Server: ${String(e)}`);
    });
    await cold?.stop();
    await pooled?.stop();
  }
}

await main();
