/**
 * GET /metrics on a real gateway with real kernels: each counter moves by exactly what was done
 * (starts from the pool and cold, executions, a deadline interrupt, a deadline kill, an OOM, a
 * client interrupt, a panic), the gauges follow kernel, pool and WebSocket state, and the endpoint
 * is behind the token like everything else.
 */
import { expect } from 'chai';
import type { JupyterMessage } from '../../protocol/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { TestClient } from '../helpers/ws-client.js';

/** Samples keyed `name{label=value,...}` with labels sorted. */
type Samples = Map<string, number>;

function key(name: string, labels: Record<string, string>): string {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join(',');
  return `${name}{${l}}`;
}

/** Parses the Prometheus text exposition format (every non-comment line must be a sample). */
function parseExposition(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m?.[1] || m[3] === undefined) throw new Error(`not an exposition sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      if (k !== undefined && v !== undefined) labels[k] = v;
    out.set(key(m[1], labels), Number(m[3]));
  }
  return out;
}

function value(s: Samples, name: string, labels: Record<string, string> = {}): number {
  const v = s.get(key(name, labels));
  if (v === undefined) throw new Error(`no sample ${key(name, labels)} in /metrics`);
  return v;
}

function isKernelStatus(state: string): (m: JupyterMessage) => boolean {
  return (m) =>
    m.channel === 'iopub' &&
    m.header.msg_type === 'status' &&
    m.content.execution_state === state &&
    (m.parent_header as { msg_id?: string }).msg_id === undefined;
}

const SIGINT_IGNORING_LOOP =
  'import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass';

describe('Prometheus metrics (real kernels)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  const clients: TestClient[] = [];

  async function scrape(): Promise<Samples> {
    const res = await t.api('/metrics');
    expect(res.status, 'GET /metrics').to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    return parseExposition(await res.text());
  }

  /** Scrapes until `pred` holds (gauges that follow asynchronous state). */
  async function scrapeUntil(pred: (s: Samples) => boolean, what: string): Promise<Samples> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = await scrape();
      if (pred(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} in /metrics`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function connect(id: string): Promise<TestClient> {
    const c = await TestClient.connect(`${t.wsBase}/api/kernels/${id}/channels`, {
      token: t.token,
    });
    clients.push(c);
    return c;
  }

  before(async () => {
    t = await startTestGateway({
      poolSize: 1,
      execTimeoutS: 1.5,
      killGraceS: 1,
      restartAfterKill: false,
      // A small memory limit, so the OOM step dies well inside the 1.5 s deadline on a loaded host
      // (at 512 MiB the allocation could outlast deadline + grace: ExecutionKilled, not an OOM).
      memoryBytes: 128 * 1024 ** 2,
      tmpSizeBytes: 16 * 1024 ** 2,
      workspaceSizeBytes: 16 * 1024 ** 2,
      pipSizeBytes: 16 * 1024 ** 2,
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    await t.close();
  });

  it('needs the token like every other endpoint', async () => {
    const res = await fetch(`${t.base}/metrics`);
    expect(res.status).to.equal(401);
    expect(await res.text()).to.not.include('aido_');
  });

  it('starts at zero with every label value present', async () => {
    const s = await scrape();
    for (const source of ['pool', 'cold', 'adopted'])
      for (const outcome of ['ok', 'error'])
        expect(value(s, 'aido_kernel_starts_total', { source, outcome })).to.equal(0);
    for (const cause of ['deadline', 'interrupt', 'panic'])
      expect(value(s, 'aido_kernel_kills_total', { cause })).to.equal(0);
    for (const state of ['starting', 'idle', 'busy', 'restarting', 'dead'])
      expect(value(s, 'aido_kernels', { state })).to.equal(0);
    expect(value(s, 'aido_execution_timeouts_total')).to.equal(0);
    expect(value(s, 'aido_kernel_ooms_total')).to.equal(0);
    expect(value(s, 'aido_websocket_connections')).to.equal(0);
    for (const channel of ['shell', 'control', 'stdin', 'iopub'])
      expect(value(s, 'aido_messages_total', { channel, direction: 'to_client' })).to.equal(0);
    expect(
      s.has(key('aido_messages_total', { channel: 'iopub', direction: 'to_kernel' })),
    ).to.equal(false);
  });

  let kernelA: string;
  let kernelB: string;

  it('counts kernel starts by source (pool, then cold) with their duration, and follows the pool', async () => {
    await scrapeUntil((s) => value(s, 'aido_warm_pool_ready') === 1, 'a ready pooled sandbox');
    // Two at once: the first takes the pooled sandbox, the second cannot wait for the refill.
    const [a, b] = await Promise.all([t.startKernel(), t.startKernel()]);
    kernelA = a.id;
    kernelB = b.id;
    const s = await scrape();
    expect(value(s, 'aido_kernel_starts_total', { source: 'pool', outcome: 'ok' })).to.equal(1);
    expect(value(s, 'aido_kernel_starts_total', { source: 'cold', outcome: 'ok' })).to.equal(1);
    expect(value(s, 'aido_kernel_start_duration_seconds_count', { source: 'pool' })).to.equal(1);
    expect(value(s, 'aido_kernel_start_duration_seconds_count', { source: 'cold' })).to.equal(1);
    expect(value(s, 'aido_kernel_start_duration_seconds_sum', { source: 'cold' })).to.be.above(0);
    expect(value(s, 'aido_kernels', { state: 'idle' })).to.equal(2);
    expect(value(s, 'aido_warm_pool_ready') + value(s, 'aido_warm_pool_starting')).to.equal(1);
  });

  it('counts WebSocket connects, executions, their duration, and messages and bytes both ways', async () => {
    const before = await scrape();
    const c = await connect(kernelA);
    const code = "print('hello metrics')";
    const r = await c.execute(code);
    expect(r.reply.content.status).to.equal('ok');
    const s = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}): number =>
      value(s, name, labels) - value(before, name, labels);

    expect(value(s, 'aido_websocket_connections')).to.equal(1);
    expect(delta('aido_websocket_connects_total')).to.equal(1);
    expect(delta('aido_executions_total', { status: 'ok' })).to.equal(1);
    expect(delta('aido_execution_duration_seconds_count')).to.equal(1);
    expect(delta('aido_execution_duration_seconds_sum')).to.be.above(0);
    const shellIn = { channel: 'shell', direction: 'to_kernel' };
    const shellOut = { channel: 'shell', direction: 'to_client' };
    const iopubOut = { channel: 'iopub', direction: 'to_client' };
    expect(delta('aido_messages_total', shellIn)).to.equal(1);
    expect(delta('aido_messages_total', shellOut)).to.equal(1);
    // busy, execute_input, stream, idle: what the client received.
    expect(delta('aido_messages_total', iopubOut)).to.equal(r.iopub.length);
    expect(r.iopub.length).to.equal(4);
    expect(delta('aido_message_bytes_total', shellIn)).to.be.above(code.length + 100);
    expect(delta('aido_message_bytes_total', iopubOut)).to.be.above(4 * 100);
  });

  it('counts a timeout with its deadline interrupt, then a deadline kill and the OOM', async () => {
    const c = await connect(kernelB);
    const before = await scrape();
    const delta = (s: Samples, name: string, labels: Record<string, string> = {}): number =>
      value(s, name, labels) - value(before, name, labels);

    const r = await c.execute('import time; time.sleep(30)', 20_000);
    expect(r.reply.content.ename).to.equal('ExecutionTimeout');
    let s = await scrape();
    expect(delta(s, 'aido_execution_timeouts_total')).to.equal(1);
    expect(delta(s, 'aido_kernel_interrupts_total', { cause: 'deadline' })).to.equal(1);
    expect(delta(s, 'aido_kernel_interrupts_total', { cause: 'request' })).to.equal(0);
    expect(delta(s, 'aido_executions_total', { status: 'error' })).to.equal(1);
    expect(delta(s, 'aido_kernel_kills_total', { cause: 'deadline' })).to.equal(0);

    const killed = await c.execute(SIGINT_IGNORING_LOOP, 30_000);
    expect(killed.reply.content.ename).to.equal('ExecutionKilled');
    await c.waitFor(isKernelStatus('dead'), 'status dead after the kill');
    s = await scrape();
    expect(delta(s, 'aido_execution_timeouts_total')).to.equal(2);
    expect(delta(s, 'aido_kernel_interrupts_total', { cause: 'deadline' })).to.equal(2);
    expect(delta(s, 'aido_kernel_kills_total', { cause: 'deadline' })).to.equal(1);
    expect(delta(s, 'aido_kernel_kills_total', { cause: 'interrupt' })).to.equal(0);
    expect(delta(s, 'aido_executions_total', { status: 'error' })).to.equal(2);
    expect(delta(s, 'aido_kernel_ooms_total'), 'a kill is not an OOM').to.equal(0);
    expect(value(s, 'aido_kernels', { state: 'dead' })).to.equal(1);

    // Kernel A runs out of memory (bytes * n writes every page, past the 128 MiB limit).
    const a = clients[0];
    if (!a) throw new Error('no client on kernel A');
    const oom = await a.execute("b = b'x' * (1024 ** 3)", 60_000);
    expect(oom.reply.content.ename).to.equal('KernelDied');
    await a.waitFor(isKernelStatus('dead'), 'status dead after the OOM kill');
    s = await scrape();
    expect(delta(s, 'aido_kernel_ooms_total')).to.equal(1);
    expect(value(s, 'aido_kernels', { state: 'dead' })).to.equal(2);
  });

  it('counts client interrupts and panic kills; the connections gauge falls back to 0', async () => {
    const c = await t.startKernel();
    await connect(c.id);
    const before = await scrape();
    const res = await t.api(`/api/kernels/${c.id}/interrupt`, { method: 'POST' });
    expect(res.status).to.equal(204);
    let s = await scrape();
    expect(
      value(s, 'aido_kernel_interrupts_total', { cause: 'request' }) -
        value(before, 'aido_kernel_interrupts_total', { cause: 'request' }),
    ).to.equal(1);
    expect(value(s, 'aido_websocket_connections')).to.equal(3);

    const kernels = t.gw.kernels.list().length;
    expect(kernels).to.equal(3);
    const panic = await t.api('/api/security/panic', { method: 'POST' });
    expect(panic.status).to.equal(200);
    s = await scrapeUntil(
      (x) => value(x, 'aido_websocket_connections') === 0,
      'every WebSocket closed after the panic',
    );
    expect(value(s, 'aido_kernel_kills_total', { cause: 'panic' })).to.equal(kernels);
    for (const state of ['idle', 'busy', 'dead'])
      expect(value(s, 'aido_kernels', { state }), state).to.equal(0);
    expect(value(s, 'aido_websocket_connects_total')).to.equal(3);
  });
});
