/**
 * The agent execute API against real kernels: outputs in order with merged streams, MIME bundles
 * and images, errors with plain tracebacks, the per-request timeout and the watchdog's kill,
 * input() refused, env as data, artifacts with working download URLs, events streamed as SSE and
 * NDJSON while the execution runs, and one-shot sandboxes that leave nothing behind.
 */
import { expect } from 'chai';
import type { AgentOutput, ExecutionDocument } from '../../gateway/agent/agent-execution.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { TestClient } from '../helpers/ws-client.js';

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

async function execute(
  t: TestGateway,
  path: string,
  body: Record<string, unknown>,
): Promise<ExecutionDocument> {
  const res = await t.api(path, { method: 'POST', body: JSON.stringify(body) });
  const text = await res.text();
  expect(res.status, `POST ${path}: ${text}`).to.equal(200);
  expect(res.headers.get('content-type')).to.match(/^application\/json/);
  return JSON.parse(text) as ExecutionDocument;
}

interface StreamedEvent {
  event: string;
  data: unknown;
  /** ms since the request was sent. */
  at: number;
}

/** Reads an SSE or NDJSON response to its end, timing each event. */
async function readEvents(res: Response, format: 'sse' | 'ndjson'): Promise<StreamedEvent[]> {
  const started = performance.now();
  const events: StreamedEvent[] = [];
  const reader: ReadableStreamDefaultReader<Uint8Array> = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const separator = format === 'sse' ? '\n\n' : '\n';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf(separator)) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + separator.length);
      if (chunk.trim() === '' || chunk.startsWith(':')) continue;
      const at = performance.now() - started;
      if (format === 'ndjson') {
        const line = JSON.parse(chunk) as { event: string; data: unknown };
        events.push({ event: line.event, data: line.data, at });
      } else {
        const event = /^event: (.*)$/m.exec(chunk)?.[1] ?? '';
        const data = /^data: (.*)$/m.exec(chunk)?.[1] ?? 'null';
        events.push({ event, data: JSON.parse(data), at });
      }
    }
  }
  return events;
}

function only<T extends AgentOutput['output_type']>(
  doc: ExecutionDocument,
  type: T,
): Extract<AgentOutput, { output_type: T }>[] {
  return doc.outputs.filter(
    (o): o is Extract<AgentOutput, { output_type: T }> => o.output_type === type,
  );
}

describe('agent API: POST /api/kernels/{id}/execute (docker)', function () {
  this.timeout(180_000);
  let t: TestGateway;
  let kernelId: string;

  before(async () => {
    t = await startTestGateway({ envAllowlist: ['AGENT_VAR'], execTimeoutS: 30 });
    kernelId = (await t.startKernel()).id;
  });
  after(async () => {
    await t.close();
  });

  const run = (body: Record<string, unknown>): Promise<ExecutionDocument> =>
    execute(t, `/api/kernels/${kernelId}/execute`, body);

  it('answers outputs in order: merged streams, display data with MIME bundles, a PNG plot, the result', async () => {
    const doc = await run({
      code: [
        'import sys',
        "print('a'); print('b')",
        'sys.stdout.flush()',
        "sys.stderr.write('warn\\n'); sys.stderr.flush()",
        "print('c')",
        'from IPython.display import display, HTML',
        "display(HTML('<b>bold</b>'))",
        'import matplotlib.pyplot as plt',
        'plt.plot([1, 2, 3], [1, 4, 9]); plt.show()',
        '6 * 7',
      ].join('\n'),
    });
    expect(doc.status).to.equal('ok');
    expect(doc.kernel_id).to.equal(kernelId);
    expect(doc.execution_count).to.be.a('number');
    expect(doc.outputs.map((o) => o.output_type)).to.deep.equal([
      'stream',
      'stream',
      'stream',
      'display_data',
      'display_data',
      'execute_result',
    ]);
    const streams = only(doc, 'stream');
    expect(streams.map((s) => [s.name, s.text])).to.deep.equal([
      ['stdout', 'a\nb\n'],
      ['stderr', 'warn\n'],
      ['stdout', 'c\n'],
    ]);
    const [html, plot] = only(doc, 'display_data');
    expect(html?.data['text/html']).to.equal('<b>bold</b>');
    expect(plot?.data['image/png']).to.be.a('string');
    expect(plot?.data['text/plain']).to.match(/Figure/);
    const result = only(doc, 'execute_result')[0];
    expect(result?.data['text/plain']).to.equal('42');
    expect(result?.execution_count).to.equal(doc.execution_count);
    expect(doc.images).to.have.length(1);
    expect(doc.images[0]?.mime_type).to.equal('image/png');
    expect(doc.images[0]?.output_index).to.equal(4);
    const png = Buffer.from(doc.images[0]?.data ?? '', 'base64');
    expect(png.subarray(0, 8).equals(PNG_MAGIC), 'PNG signature').to.equal(true);
    expect(doc.duration_ms).to.be.a('number').and.be.at.least(0);
    expect(doc.artifacts).to.deep.equal([]);
  });

  it('reports an error with its traceback, and the traceback without ANSI colours', async () => {
    const doc = await run({ code: "print('before')\n1 / 0" });
    expect(doc.status).to.equal('error');
    expect(doc.error).to.deep.equal({ ename: 'ZeroDivisionError', evalue: 'division by zero' });
    expect(doc.outputs[0]).to.deep.equal({
      output_type: 'stream',
      name: 'stdout',
      text: 'before\n',
    });
    const err = only(doc, 'error')[0];
    expect(err?.ename).to.equal('ZeroDivisionError');
    expect(err?.traceback.join('\n')).to.include('\u001b[');
    expect(err?.traceback_text).to.not.include('\u001b');
    expect(err?.traceback_text).to.include('ZeroDivisionError: division by zero');
    expect(err?.traceback_text).to.include('1 / 0');
  });

  it('refuses input(): the kernel raises StdinNotImplementedError', async () => {
    const doc = await run({ code: "input('name? ')" });
    expect(doc.status).to.equal('error');
    expect(doc.error).to.deep.equal({
      ename: 'StdinNotImplementedError',
      evalue: 'raw_input was called, but this frontend does not support input requests.',
    });
  });

  it('interrupts at timeout_s (status timeout) and the kernel keeps its state', async () => {
    await run({ code: 'kept = 7' });
    const doc = await run({ code: 'while True: pass', timeout_s: 2 });
    expect(doc.status).to.equal('timeout');
    expect(doc.error?.ename).to.equal('ExecutionTimeout');
    expect(doc.error?.evalue).to.include('timeout_s (2 s)');
    expect(doc.duration_ms).to.be.at.least(1900).and.below(15_000);
    const err = only(doc, 'error')[0];
    expect(err?.ename).to.equal('ExecutionTimeout');
    expect(err?.traceback_text).to.include('KeyboardInterrupt');
    const after = await run({ code: 'kept * 6' });
    expect(after.status).to.equal('ok');
    expect(only(after, 'execute_result')[0]?.data['text/plain']).to.equal('42');
  });

  it('refuses a timeout_s above AIDO_EXEC_TIMEOUT, unknown fields and a missing code with 400', async () => {
    for (const body of [
      { code: '1', timeout_s: 31 },
      { code: '1', timeout_s: -1 },
      { code: '1', timeout: 5 },
      { timeout_s: 5 },
      { code: 1 },
    ]) {
      const res = await t.api(`/api/kernels/${kernelId}/execute`, {
        method: 'POST',
        body: JSON.stringify(body),
      });
      expect(res.status, JSON.stringify(body)).to.equal(400);
      const err = (await res.json()) as { reason: string; message: string };
      expect(err.reason).to.equal('Bad Request');
      expect(err.message).to.be.a('string').and.not.be.empty;
    }
    const res = await t.api('/api/kernels/00000000-0000-0000-0000-000000000000/execute', {
      method: 'POST',
      body: JSON.stringify({ code: '1' }),
    });
    expect(res.status).to.equal(404);
  });

  it('sets allow-listed env as data before the code runs; other names are ignored', async () => {
    const tricky = 'x\'; import os; os._exit(1) #\n"\\';
    const doc = await run({
      code: [
        'import os, json',
        "print(json.dumps([os.environ.get('AGENT_VAR'), os.environ.get('NOT_LISTED'), os.environ.get('PATH') == '/evil']))",
        "print(os.path.exists('/run/kernel/agent-env.json'))",
      ].join('\n'),
      env: { AGENT_VAR: tricky, NOT_LISTED: 'no', PATH: '/evil' },
    });
    expect(doc.status).to.equal('ok');
    const text = only(doc, 'stream')[0]?.text ?? '';
    const [first, second] = text.split('\n');
    expect(JSON.parse(first ?? 'null')).to.deep.equal([tricky, null, false]);
    expect(second).to.equal('False');
    const bad = await t.api(`/api/kernels/${kernelId}/execute`, {
      method: 'POST',
      body: JSON.stringify({ code: '1', env: { AGENT_VAR: 5 } }),
    });
    expect(bad.status).to.equal(400);
  });

  it('lists files the execution created or changed as artifacts; their URLs download them', async () => {
    const doc = await run({
      code: [
        'import pandas as pd, os',
        "os.makedirs('out', exist_ok=True)",
        "pd.DataFrame({'x': [1, 2, 3], 'y': [1, 4, 9]}).to_csv('out/table.csv', index=False)",
        "open('notes.txt', 'w').write('first')",
      ].join('\n'),
    });
    expect(doc.status).to.equal('ok');
    expect(doc.artifacts.map((a) => [a.path, a.change, a.mime_type])).to.deep.equal([
      ['notes.txt', 'created', 'text/plain'],
      ['out/table.csv', 'created', 'text/csv'],
    ]);
    const csv = doc.artifacts.find((a) => a.path === 'out/table.csv');
    expect(csv?.size).to.equal('x,y\n1,1\n2,4\n3,9\n'.length);
    expect(csv?.url).to.equal(`/api/kernels/${kernelId}/files/out/table.csv`);
    const res = await t.api(csv?.url ?? '');
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.equal('text/csv; charset=utf-8');
    expect(await res.text()).to.equal('x,y\n1,1\n2,4\n3,9\n');

    const untouched = await run({ code: '1 + 1' });
    expect(untouched.artifacts).to.deep.equal([]);
    const changed = await run({ code: "open('notes.txt', 'a').write(' and second')" });
    expect(changed.artifacts).to.deep.equal([
      {
        path: 'notes.txt',
        size: 'first and second'.length,
        mime_type: 'text/plain',
        change: 'modified',
        url: `/api/kernels/${kernelId}/files/notes.txt`,
      },
    ]);
  });

  it('is an ordinary client of the kernel: WebSocket clients see its output on iopub', async () => {
    const ws = await TestClient.connect(`${t.wsBase}/api/kernels/${kernelId}/channels`, {
      token: t.token,
    });
    try {
      const seen = ws.waitFor(
        (m) => m.header.msg_type === 'stream' && m.content.text === 'seen by the socket\n',
        'the agent execution’s stream on the socket',
      );
      const doc = await run({ code: "print('seen by the socket')" });
      expect(doc.status).to.equal('ok');
      const msg = await seen;
      expect((msg.parent_header as { session?: string }).session).to.match(/^agent-/);
    } finally {
      ws.close();
    }
  });

  for (const format of ['sse', 'ndjson'] as const) {
    it(`streams events as they happen (${format}); the last one carries the whole document`, async () => {
      const accept = format === 'sse' ? 'text/event-stream' : 'application/x-ndjson';
      const res = await t.api(`/api/kernels/${kernelId}/execute`, {
        method: 'POST',
        headers: { Accept: accept },
        body: JSON.stringify({
          code: "import time\nprint(1, flush=True)\ntime.sleep(2)\nprint(2)\n'end'",
        }),
      });
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-type')).to.equal(`${accept}; charset=utf-8`);
      const events = await readEvents(res, format);
      expect(events.map((e) => e.event)).to.deep.equal([
        'stream',
        'stream',
        'execute_result',
        'done',
      ]);
      const [first, , , done] = events;
      expect(first?.data).to.deep.equal({ output_type: 'stream', name: 'stdout', text: '1\n' });
      // The first event arrived while the execution was still sleeping.
      expect((done?.at ?? 0) - (first?.at ?? 0)).to.be.at.least(1500);
      const doc = done?.data as ExecutionDocument;
      expect(doc.status).to.equal('ok');
      expect(doc.outputs).to.deep.equal([
        { output_type: 'stream', name: 'stdout', text: '1\n2\n' },
        {
          output_type: 'execute_result',
          execution_count: doc.execution_count,
          data: { 'text/plain': "'end'" },
          metadata: {},
        },
      ]);
    });
  }

  it('carries on when a client goes away mid-execution: the code finishes, the kernel stays usable', async () => {
    const abort = new AbortController();
    const res = await t.api(`/api/kernels/${kernelId}/execute`, {
      method: 'POST',
      headers: { Accept: 'text/event-stream' },
      body: JSON.stringify({
        code: "import time\nprint('started', flush=True)\ntime.sleep(1.5)\nabandoned_result = 'finished anyway'",
      }),
      signal: abort.signal,
    });
    const reader: ReadableStreamDefaultReader<Uint8Array> = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).to.include('started');
    abort.abort();
    // Queued behind the abandoned execution, which still completes.
    const doc = await run({ code: 'abandoned_result' });
    expect(doc.status).to.equal('ok');
    expect(only(doc, 'execute_result')[0]?.data['text/plain']).to.equal("'finished anyway'");
  });

  it('streams an error answer as plain JSON when the request is refused before it starts', async () => {
    const res = await t.api(`/api/kernels/${kernelId}/execute`, {
      method: 'POST',
      headers: { Accept: 'text/event-stream' },
      body: JSON.stringify({ code: '1', timeout_s: 999 }),
    });
    expect(res.status).to.equal(400);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
  });
});

describe('agent API: the watchdog kill (docker)', function () {
  this.timeout(180_000);
  let t: TestGateway;

  before(async () => {
    t = await startTestGateway({ execTimeoutS: 2, killGraceS: 1 });
  });
  after(async () => {
    await t.close();
  });

  it('answers status killed when SIGINT is ignored past the deadline', async () => {
    const { id } = await t.startKernel();
    const doc = await execute(t, `/api/kernels/${id}/execute`, {
      code: 'import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass',
    });
    expect(doc.status).to.equal('killed');
    expect(doc.error?.ename).to.equal('ExecutionKilled');
    expect(doc.error?.evalue).to.match(/killed/);
    expect(doc.artifacts_error).to.match(/sandbox was replaced|could not be listed/);
  });
});

describe('agent API: POST /api/execute, one-shot sandboxes (docker)', function () {
  this.timeout(180_000);
  let t: TestGateway;

  before(async () => {
    t = await startTestGateway({ envAllowlist: ['AGENT_VAR'] });
  });
  after(async () => {
    await t.close();
  });

  it('runs in a fresh sandbox, inlines small artifacts, and leaves no container behind', async () => {
    const doc = await execute(t, '/api/execute', {
      code: "import os\nopen('result.txt', 'w').write(os.environ['AGENT_VAR'])\nprint('done')",
      env: { AGENT_VAR: 'one-shot value' },
    });
    expect(doc.status).to.equal('ok');
    expect(doc.kernel_id).to.equal(undefined);
    expect(doc.outputs).to.deep.equal([{ output_type: 'stream', name: 'stdout', text: 'done\n' }]);
    expect(doc.artifacts).to.deep.equal([
      {
        path: 'result.txt',
        size: 'one-shot value'.length,
        mime_type: 'text/plain',
        change: 'created',
        content_base64: Buffer.from('one-shot value').toString('base64'),
      },
    ]);
    expect(t.gw.kernels.list()).to.deep.equal([]);
    expect(await t.gw.runtime.list()).to.deep.equal([]);
  });

  it('shuts the sandbox down after an error and after a timeout too', async () => {
    const err = await execute(t, '/api/execute', { code: 'raise ValueError("nope")' });
    expect(err.status).to.equal('error');
    expect(err.error).to.deep.equal({ ename: 'ValueError', evalue: 'nope' });
    const slow = await execute(t, '/api/execute', { code: 'while True: pass', timeout_s: 1 });
    expect(slow.status).to.equal('timeout');
    expect(t.gw.kernels.list()).to.deep.equal([]);
    expect(await t.gw.runtime.list()).to.deep.equal([]);
  });

  it('validates the request before starting a sandbox', async () => {
    const res = await t.api('/api/execute', {
      method: 'POST',
      body: JSON.stringify({ code: '1', timeout_s: 10_000 }),
    });
    expect(res.status).to.equal(400);
    expect(await t.gw.runtime.list()).to.deep.equal([]);
  });
});
