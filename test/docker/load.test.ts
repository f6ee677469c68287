/**
 * Load on real sandboxes: 20 kernels, 50 WebSocket clients (v1 and legacy framings mixed, 2–3
 * clients per kernel), each running executions back to back for AIDO_LOAD_SECONDS (default 60).
 * Every execution prints a numbered sequence tagged with its client and number, some end in an
 * execute_result, some show a display_data between two prints. Checked for every execution: the
 * reply is ok; the outputs parented to it are exactly the expected ones, once, in order; busy
 * first, idle last. Checked across clients: no client gets a reply to another's request, no iopub
 * of another kernel, and every client sharing a kernel sees the others' outputs, complete and in
 * order. Assertions are about correctness; the figures (executions, messages, round trips) are
 * printed for the record, not asserted, since the machine is shared.
 */
import { performance } from 'node:perf_hooks';
import { expect } from 'chai';
import type { JupyterMessage } from '../../protocol/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { LoadClient, type Execution } from '../helpers/load-client.js';

const LOAD_SECONDS = Number(process.env.AIDO_LOAD_SECONDS ?? 60);
const KERNELS = 20;
/** Kernels 0–9 get three clients, 10–19 two: 50 in all. */
const CLIENTS_PER_KERNEL = (k: number): number => (k < 10 ? 3 : 2);
/** Generous: other engineers load the same two cores. */
const EXECUTION_TIMEOUT_MS = 120_000;
const START_CONCURRENCY = 4;

type Output =
  | { stdout: string }
  | { stderr: string }
  | { display: string }
  | { result: string }
  | { error: string }
  | { unexpected: string };

interface Plan {
  code: string;
  expected: Output[];
}

interface ClientRecord {
  index: number;
  kernel: number;
  client: LoadClient;
  executions: { execution: Execution; plan: Plan }[];
}

/** A small seeded generator (mulberry32), so a failing run can be replayed per client. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** The next execution of client `c`: a tagged, numbered print loop and maybe a result or display. */
function planExecution(c: number, seq: number, rng: () => number): Plan {
  const tag = `c${c}e${seq}`;
  const n = 1 + Math.floor(rng() * 40);
  const lines = Array.from({ length: n }, (_, i) => `${tag}:${i}\n`).join('');
  const loop = `for i in range(${n}):\n    print(f'${tag}:{i}')`;
  const kind = rng();
  if (kind < 0.5) return { code: loop, expected: [{ stdout: lines }] };
  if (kind < 0.8) {
    return {
      code: `${loop}\n'${tag}:result'`,
      expected: [{ stdout: lines }, { result: `'${tag}:result'` }],
    };
  }
  return {
    code: [
      'from IPython.display import display',
      loop,
      `display({'text/plain': '${tag}:display'}, raw=True)`,
      `print('${tag}:after')`,
    ].join('\n'),
    expected: [{ stdout: lines }, { display: `${tag}:display` }, { stdout: `${tag}:after\n` }],
  };
}

/** The outputs among an execution's iopub messages, consecutive stream chunks joined. */
function outputsOf(iopub: readonly JupyterMessage[]): Output[] {
  const out: Output[] = [];
  for (const m of iopub) {
    const type = m.header.msg_type;
    if (type === 'status' || type === 'execute_input') continue;
    const last = out.at(-1);
    if (type === 'stream') {
      const text = String(m.content.text);
      if (m.content.name === 'stdout') {
        if (last && 'stdout' in last) last.stdout += text;
        else out.push({ stdout: text });
      } else if (last && 'stderr' in last) last.stderr += text;
      else out.push({ stderr: text });
    } else if (type === 'display_data' || type === 'execute_result') {
      const text = (m.content.data as Record<string, string> | undefined)?.['text/plain'] ?? '';
      out.push(type === 'display_data' ? { display: text } : { result: text });
    } else if (type === 'error') {
      out.push({ error: `${String(m.content.ename)}: ${String(m.content.evalue)}` });
    } else {
      out.push({ unexpected: type });
    }
  }
  return out;
}

/** busy first, idle last, one execute_input with the code: the frame of one execution. */
function expectFramed(iopub: readonly JupyterMessage[], code: string, what: string): void {
  const states = iopub
    .filter((m) => m.header.msg_type === 'status')
    .map((m) => m.content.execution_state);
  expect(states, `${what}: status busy then idle, once each`).to.deep.equal(['busy', 'idle']);
  expect(iopub[0]?.content.execution_state, `${what}: busy first`).to.equal('busy');
  expect(iopub.at(-1)?.content.execution_state, `${what}: idle last`).to.equal('idle');
  const inputs = iopub.filter((m) => m.header.msg_type === 'execute_input');
  expect(
    inputs.map((m) => m.content.code),
    `${what}: one execute_input`,
  ).to.deep.equal([code]);
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

describe(`load: ${KERNELS} kernels, 50 clients, ${LOAD_SECONDS} s of executions (real sandboxes)`, function () {
  this.timeout(LOAD_SECONDS * 1000 + 180_000);
  let t: TestGateway;
  let kernelIds: string[] = [];
  const records: ClientRecord[] = [];
  /** Which kernel each request went to, for every client's requests. */
  const kernelOfRequest = new Map<string, number>();
  const figures = { kernelStartS: 0, loadS: 0, shutdownS: 0 };
  let loadRan = false;

  before(async () => {
    t = await startTestGateway({
      maxKernels: KERNELS,
      poolSize: 0,
      kernelStartTimeoutS: 120,
      execTimeoutS: 120,
      // 20 × 0.05 cores: the kernels together never take more than one of the two shared cores.
      cpus: 0.05,
    });
    const started = performance.now();
    kernelIds = new Array<string>(KERNELS);
    let next = 0;
    // A few starts at a time: the machine is shared.
    await Promise.all(
      Array.from({ length: START_CONCURRENCY }, async () => {
        while (next < KERNELS) {
          const k = next++;
          kernelIds[k] = (await t.startKernel()).id;
        }
      }),
    );
    figures.kernelStartS = (performance.now() - started) / 1000;
    let index = 0;
    for (let k = 0; k < KERNELS; k++) {
      for (let j = 0; j < CLIENTS_PER_KERNEL(k); j++) {
        const client = await LoadClient.connect(
          `${t.wsBase}/api/kernels/${kernelIds[k] ?? ''}/channels`,
          {
            token: t.token,
            session: `load-c${index}`,
            // Alternating framings: every kernel has a v1 and a legacy client.
            protocol: index % 2 === 0 ? 'v1' : 'legacy',
          },
        );
        records.push({ index, kernel: k, client, executions: [] });
        index++;
      }
    }
    expect(records).to.have.length(50);
  });

  after(async () => {
    await Promise.all(records.map((r) => r.client.close()));
    const closing = performance.now();
    await t.close();
    figures.shutdownS = (performance.now() - closing) / 1000;
    const executions = records.reduce((n, r) => n + r.executions.length, 0);
    const messages = records.reduce((n, r) => n + r.client.received, 0);
    const rtts = records
      .flatMap((r) => r.executions.map((e) => e.execution.roundTripMs))
      .sort((a, b) => a - b);
    console.log(
      [
        `      load: ${KERNELS} kernels started in ${figures.kernelStartS.toFixed(1)} s (${START_CONCURRENCY} at a time)`,
        `      load: ${records.length} clients, ${figures.loadS.toFixed(1)} s: ${executions} executions (${(executions / (figures.loadS || 1)).toFixed(1)}/s), ${messages} messages received`,
        `      load: execute round trip p50 ${percentile(rtts, 50).toFixed(1)} ms, p99 ${percentile(rtts, 99).toFixed(1)} ms, max ${(rtts.at(-1) ?? Number.NaN).toFixed(1)} ms`,
        `      load: shutdown of ${KERNELS} kernels ${figures.shutdownS.toFixed(1)} s`,
      ].join('\n'),
    );
  });

  it('every execution: reply ok, its outputs exactly once and in order, parented to it', async () => {
    let failed = false;
    const deadline = performance.now() + LOAD_SECONDS * 1000;
    const started = performance.now();
    await Promise.all(
      records.map(async (r) => {
        const rng = seeded(r.index + 1);
        try {
          for (let seq = 0; !failed && performance.now() < deadline; seq++) {
            const plan = planExecution(r.index, seq, rng);
            const execution = await r.client.execute(plan.code, EXECUTION_TIMEOUT_MS);
            const id = execution.request.header.msg_id;
            kernelOfRequest.set(id, r.kernel);
            r.executions.push({ execution, plan });
            const what = `client ${r.index} (${r.client.protocol}) execution ${seq}`;

            const replies = r.client.repliesByParent.get(id) ?? [];
            expect(
              replies.map((m) => m.header.msg_type),
              `${what}: one reply`,
            ).to.deep.equal(['execute_reply']);
            expect(execution.reply.channel).to.equal('shell');
            expect(
              execution.reply.content.status,
              `${what}: ${JSON.stringify(execution.reply.content)}`,
            ).to.equal('ok');
            expectFramed(execution.iopub, plan.code, what);
            expect(outputsOf(execution.iopub), `${what}: outputs`).to.deep.equal(plan.expected);
            const result = execution.iopub.find((m) => m.header.msg_type === 'execute_result');
            if (result) {
              expect(result.content.execution_count, `${what}: result and reply agree`).to.equal(
                execution.reply.content.execution_count,
              );
            }
          }
        } catch (err) {
          // Stop the other loops too: one failure is enough, and the rest would pile on.
          failed = true;
          throw err;
        }
      }),
    );
    figures.loadS = (performance.now() - started) / 1000;
    loadRan = true;
    for (const r of records) {
      expect(r.executions.length, `client ${r.index} ran executions`).to.be.greaterThan(0);
    }
  });

  it('no client gets another client’s replies, iopub of another kernel, or undecodable frames', () => {
    expect(loadRan, 'the load ran').to.equal(true);
    for (const r of records) {
      const who = `client ${r.index}`;
      expect(r.client.decodeErrors, `${who}: undecodable frames`).to.deep.equal([]);
      const foreignReplies = [...r.client.repliesByParent.keys()].filter(
        (id) => !r.client.sent.has(id),
      );
      expect(foreignReplies, `${who}: replies to requests it did not send`).to.deep.equal([]);
      const otherKernels = [...r.client.iopubByParent.keys()].filter(
        (id) => kernelOfRequest.get(id) !== r.kernel,
      );
      expect(
        otherKernels,
        `${who}: iopub parented to requests of other kernels (or unknown)`,
      ).to.deep.equal([]);
      expect(
        r.client.parentless.map((m) => `${m.header.msg_type} ${JSON.stringify(m.content)}`),
        `${who}: no gateway broadcasts (no restart, no death, no notice)`,
      ).to.deep.equal([]);
    }
  });

  it('clients sharing a kernel each receive the others’ outputs, complete and in order', async () => {
    expect(loadRan, 'the load ran').to.equal(true);
    let checked = 0;
    for (const r of records) {
      for (const peer of records) {
        if (peer === r || peer.kernel !== r.kernel) continue;
        const last = peer.executions.at(-1);
        if (!last) continue;
        // iopub reaches every client in order: once the peer's last idle is here, all is.
        await r.client.waitIdle(
          last.execution.request.header.msg_id,
          `client ${peer.index}'s last idle on client ${r.index}`,
          EXECUTION_TIMEOUT_MS,
        );
        for (const [seq, { execution, plan }] of peer.executions.entries()) {
          const seen = r.client.iopubByParent.get(execution.request.header.msg_id) ?? [];
          const what = `client ${r.index} watching client ${peer.index}'s execution ${seq}`;
          expectFramed(seen, plan.code, what);
          expect(outputsOf(seen), `${what}: outputs`).to.deep.equal(plan.expected);
          expect(
            seen.map((m) => m.header.msg_id),
            `${what}: the very messages the requester got`,
          ).to.deep.equal(execution.iopub.map((m) => m.header.msg_id));
          checked++;
        }
      }
    }
    expect(checked, 'peer executions checked').to.be.greaterThan(0);
    console.log(`      load: ${checked} executions checked on the clients that did not send them`);
  });
});
