/**
 * POST /api/chat against an OpenAI-compatible model server that the test runs on loopback
 * (scripted per test, speaking Chat Completions JSON and streamed chunks), a real gateway and real
 * kernels: a two-step analysis on an uploaded CSV, variables across turns, refused tool calls, the
 * step limit, a timeout, kernel death, a client that goes away, model server failures, the API key
 * kept out of sandboxes and logs, conversations, the 503 when unconfigured, and auth. The scripted
 * server records every request, so the tests check the wire contract both ways.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import Docker from 'dockerode';
import type { ChatAnswer } from '../../gateway/agent/chat-loop.js';
import type { ConversationView } from '../../gateway/agent/chat-conversations.js';
import { createLogger } from '../../gateway/base/logger.js';
import { kernelModel, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { lastOf, ScriptedModel, textOf, type ModelRequest } from '../helpers/scripted-model.js';
import { waitUntil } from '../helpers/wait.js';

interface ChatEventRecord {
  event: string;
  data: Record<string, unknown>;
}

async function chat(
  t: TestGateway,
  body: Record<string, unknown>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await t.api('/api/chat', { method: 'POST', body: JSON.stringify(body) });
  expect(res.headers.get('content-type')).to.match(/^application\/json/);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function chatOk(t: TestGateway, body: Record<string, unknown>): Promise<ChatAnswer> {
  const r = await chat(t, body);
  expect(r.status, JSON.stringify(r.body)).to.equal(200);
  return r.body as unknown as ChatAnswer;
}

/**
 * Streams a chat request and reads its server-sent events; `stopWhen` aborts the request (the
 * client going away) once an event matches.
 */
async function chatStream(
  t: TestGateway,
  body: Record<string, unknown>,
  opts: {
    onEvent?: (e: ChatEventRecord) => void;
    stopWhen?: (e: ChatEventRecord) => boolean;
  } = {},
): Promise<ChatEventRecord[]> {
  const abort = new AbortController();
  const res = await t.api('/api/chat', {
    method: 'POST',
    body: JSON.stringify({ ...body, stream: true }),
    signal: abort.signal,
  });
  expect(res.status).to.equal(200);
  expect(res.headers.get('content-type')).to.match(/^text\/event-stream/);
  const events: ChatEventRecord[] = [];
  const reader: ReadableStreamDefaultReader<Uint8Array> = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (chunk.trim() === '' || chunk.startsWith(':')) continue;
      const event = /^event: (.*)$/m.exec(chunk)?.[1] ?? '';
      const data = JSON.parse(/^data: (.*)$/m.exec(chunk)?.[1] ?? 'null') as Record<
        string,
        unknown
      >;
      events.push({ event, data });
      opts.onEvent?.({ event, data });
      if (opts.stopWhen?.({ event, data })) {
        abort.abort();
        await reader.cancel().catch(() => undefined);
        return events;
      }
    }
  }
  return events;
}

async function conversation(t: TestGateway, id: string): Promise<ConversationView> {
  const res = await t.api(`/api/chat/${id}`);
  expect(res.status).to.equal(200);
  return (await res.json()) as ConversationView;
}

function toolCall(name: string, args: unknown, id?: string) {
  return {
    ...(id !== undefined ? { id } : {}),
    name,
    arguments: typeof args === 'string' ? args : JSON.stringify(args),
  };
}

function roles(req: ModelRequest | undefined): string[] {
  return req?.body.messages.map((m) => m.role) ?? [];
}

const CSV = [
  'month,revenue,cost',
  '2026-01,120,80',
  '2026-02,135,82',
  '2026-03,160,90',
  '2026-04,150,95',
  '2026-05,190,99',
  '2026-06,210,104',
  '',
].join('\n');

describe('POST /api/chat against a scripted OpenAI-compatible model server (docker)', function () {
  this.timeout(180_000);
  let model: ScriptedModel;
  let t: TestGateway;
  /** A kernel of the caller's, shared by the tests that need no kernel of their own. */
  let shared: string;

  before(async () => {
    model = await ScriptedModel.start();
    t = await startTestGateway({
      llmBaseUrl: model.baseUrl,
      llmModel: 'scripted-model',
      llmMaxSteps: 3,
      llmMaxRetries: 0,
      llmTimeoutS: 30,
      llmImages: true,
      llmToolResultChars: 4000,
    });
    shared = (await t.startKernel()).id;
  });

  after(async () => {
    await t.close();
    await model.close();
  });

  it('a two-step analysis: loads a CSV uploaded to /workspace, plots it, and the answer cites the result', async () => {
    const up = await t.api(`/api/kernels/${shared}/files/data/sales.csv`, {
      method: 'PUT',
      body: CSV,
    });
    expect(up.status).to.equal(201);
    model.reset((req, i) => {
      if (i === 0)
        return {
          tool_calls: [
            toolCall('run_python', {
              code: "import pandas as pd\ndf = pd.read_csv('data/sales.csv')\ndf['profit'] = df.revenue - df.cost\nprint('total profit', df.profit.sum())",
            }),
          ],
        };
      if (i === 1)
        return {
          content: 'Now the chart.',
          tool_calls: [
            toolCall('run_python', {
              code: "import matplotlib.pyplot as plt\ndf.plot(x='month', y='profit', kind='bar')\nplt.savefig('profit.png')\nplt.show()",
            }),
          ],
        };
      // The answer is built from what the gateway sent back: the kernel's own number.
      const first = req.body.messages.find((m) => m.role === 'tool');
      const total = /total profit (\d+)/.exec(textOf(first))?.[1] ?? 'unknown';
      return { content: `Total profit in H1 is ${total}; the chart is in profit.png.` };
    });

    const answer = await chatOk(t, {
      message: 'What was the total profit in data/sales.csv? Plot it.',
      kernel_id: shared,
    });
    expect(answer.message).to.deep.equal({
      role: 'assistant',
      content: 'Total profit in H1 is 415; the chart is in profit.png.',
    });
    expect(answer.kernel_id).to.equal(shared);
    expect(answer.finish_reason).to.equal('stop');
    expect(answer.usage).to.deep.equal({
      prompt_tokens: 303,
      completion_tokens: 30,
      total_tokens: 333,
    });
    expect(answer.steps.map((s) => s.status)).to.deep.equal(['ok', 'ok']);
    expect(answer.steps[0]?.outputs).to.deep.equal([
      { output_type: 'stream', name: 'stdout', text: 'total profit 415\n' },
    ]);
    const plot = answer.steps[1];
    expect(plot?.artifacts.map((a) => a.path)).to.deep.equal(['profit.png']);
    expect(plot?.outputs.some((o) => o.output_type === 'display_data' && 'image/png' in o.data)).to
      .be.true;

    // What the gateway sent: the system prompt, the tools, the tool results, the plot.
    expect(model.requests).to.have.length(3);
    const [r0, r1, r2] = model.requests;
    expect(r0?.body.model).to.equal('scripted-model');
    expect(r0?.body.stream ?? false).to.equal(false);
    expect(r0?.headers.authorization, 'no key configured: no Authorization header').to.equal(
      undefined,
    );
    expect(roles(r0)).to.deep.equal(['system', 'user']);
    const system = textOf(r0?.body.messages[0]);
    expect(system).to.include('/workspace').and.include('30 s').and.include('pandas');
    expect(r0?.body.tools?.map((x) => x.function.name)).to.deep.equal([
      'run_python',
      'list_files',
      'read_file',
    ]);
    expect(r0?.body.tools?.[0]?.function.parameters).to.deep.include({
      type: 'object',
      required: ['code'],
    });
    expect(roles(r1)).to.deep.equal(['system', 'user', 'assistant', 'tool']);
    const call0 = r1?.body.messages[2]?.tool_calls?.[0];
    expect(call0?.id).to.equal('call_0_0');
    expect(JSON.parse(call0?.function.arguments ?? '{}')).to.have.property('code');
    const result0 = lastOf(r1, 'tool');
    expect(result0?.tool_call_id).to.equal('call_0_0');
    expect(textOf(result0))
      .to.match(/^status: ok/)
      .and.include('total profit 415');
    expect(roles(r2)).to.deep.equal([
      'system',
      'user',
      'assistant',
      'tool',
      'assistant',
      'tool',
      'user',
    ]);
    expect(textOf(lastOf(r2, 'tool'))).to.include('profit.png');
    const images = lastOf(r2, 'user')?.content;
    expect(Array.isArray(images)).to.be.true;
    const imageParts = (images as { type: string; image_url?: { url: string } }[]).filter(
      (p) => p.type === 'image_url',
    );
    expect(imageParts).to.have.length(1);
    expect(imageParts[0]?.image_url?.url).to.match(/^data:image\/png;base64,iVBORw0KGgo/);

    // Ending the conversation leaves the caller's kernel alone.
    const del = await t.api(`/api/chat/${answer.conversation_id}`, { method: 'DELETE' });
    expect(del.status).to.equal(204);
    expect((await kernelModel(t, shared)).execution_state).to.equal('idle');
  });

  it('keeps variables across two streamed turns on its own kernel, and GET/DELETE /api/chat/{id}', async () => {
    model.reset((req, i) => {
      if (i === 0)
        return {
          content: 'Let me compute that.',
          tool_calls: [toolCall('run_python', { code: 'x = 6 * 7\nx' })],
        };
      if (i === 1) return { content: 'x is 42.' };
      if (i === 2) return { tool_calls: [toolCall('run_python', { code: 'print(x + 1)' })] };
      return { content: `x + 1 printed ${textOf(lastOf(req, 'tool')).split('\n')[1] ?? ''}` };
    });

    const first = await chatStream(t, { message: 'Set x to 6*7.' });
    const names = first.map((e) => e.event);
    expect(names[0]).to.equal('conversation');
    expect(first[0]?.data.kernel_id, 'the kernel starts on first use').to.equal(null);
    expect(names.at(-1)).to.equal('message');
    const order = ['tool_call', 'tool_output', 'tool_result', 'message'].map((n) =>
      names.indexOf(n),
    );
    expect(order.every((n) => n > 0)).to.be.true;
    expect([...order].sort((a, b) => a - b)).to.deep.equal(order);
    const deltas = first
      .filter((e) => e.event === 'delta')
      .map((e) => e.data.content)
      .join('');
    expect(deltas).to.equal('Let me compute that.x is 42.');
    const call = first.find((e) => e.event === 'tool_call');
    expect(call?.data).to.deep.include({
      id: 'call_0_0',
      name: 'run_python',
      code: 'x = 6 * 7\nx',
    });
    const output = first.find((e) => e.event === 'tool_output');
    expect(output?.data).to.deep.include({ tool_call_id: 'call_0_0', event: 'execute_result' });
    const final = first.at(-1)?.data as unknown as ChatAnswer;
    expect(final.message.content).to.equal('x is 42.');
    const kernelId = final.kernel_id;
    expect(kernelId).to.be.a('string');
    expect(model.requests[0]?.body.stream).to.equal(true);
    expect(model.requests[0]?.body.stream_options).to.deep.equal({ include_usage: true });

    const second = await chatStream(t, {
      message: 'Now print x + 1.',
      conversation_id: final.conversation_id,
    });
    const answer = second.at(-1)?.data as unknown as ChatAnswer;
    expect(second.at(-1)?.event).to.equal('message');
    expect(answer.message.content).to.equal('x + 1 printed 43');
    expect(answer.kernel_id).to.equal(kernelId);
    expect(roles(model.requests[2])).to.deep.equal([
      'system',
      'user',
      'assistant',
      'tool',
      'assistant',
      'user',
    ]);

    const view = await conversation(t, final.conversation_id);
    expect(view).to.deep.include({ kernel_id: kernelId, kernel_owned: true, busy: false });
    expect(view.messages.map((m) => m.role)).to.deep.equal([
      'user',
      'assistant',
      'tool',
      'assistant',
      'user',
      'assistant',
      'tool',
      'assistant',
    ]);
    expect(view.steps.map((s) => s.code)).to.deep.equal(['x = 6 * 7\nx', 'print(x + 1)']);
    expect(view.bytes).to.be.above(0);

    const del = await t.api(`/api/chat/${final.conversation_id}`, { method: 'DELETE' });
    expect(del.status).to.equal(204);
    const gone = await t.api(`/api/chat/${final.conversation_id}`);
    expect(gone.status).to.equal(404);
    expect(await gone.json()).to.have.property('reason', 'Not Found');
    expect((await t.api(`/api/kernels/${kernelId}`)).status, 'its own kernel ended').to.equal(404);
  });

  it('refuses tool calls with invalid JSON arguments or an unknown tool name, and tells the model why', async () => {
    model.reset((_req, i) =>
      i === 0
        ? {
            tool_calls: [
              toolCall('run_python', '{"code": "print(1)'),
              toolCall('delete_everything', {}),
            ],
          }
        : { content: 'Sorry.' },
    );
    const answer = await chatOk(t, { message: 'Go.', kernel_id: shared });
    expect(answer.message.content).to.equal('Sorry.');
    expect(answer.steps.map((s) => s.status)).to.deep.equal(['rejected', 'rejected']);
    expect(answer.steps[0]?.error?.evalue).to.match(/not valid JSON/);
    expect(answer.steps[1]?.error?.evalue).to.match(/no tool named "delete_everything"/);
    const r1 = model.requests[1];
    const results = r1?.body.messages.filter((m) => m.role === 'tool') ?? [];
    expect(results.map((m) => m.tool_call_id)).to.deep.equal(['call_0_0', 'call_0_1']);
    expect(textOf(results[0])).to.match(/^Error: the arguments of run_python are not valid JSON/);
    expect(textOf(results[1])).to.match(/^Error: there is no tool named "delete_everything"/);
    await t.api(`/api/chat/${answer.conversation_id}`, { method: 'DELETE' });
  });

  it('stops a model that never stops calling tools at AIDO_LLM_MAX_STEPS and answers with what was done', async () => {
    model.reset((_req, i) => ({
      tool_calls: [toolCall('run_python', { code: `print(${i})` })],
    }));
    const answer = await chatOk(t, { message: 'Loop forever.', kernel_id: shared });
    expect(answer.finish_reason).to.equal('step_limit');
    expect(answer.message.content).to.match(/step limit \(3 tool rounds/);
    expect(answer.steps.map((s) => s.code)).to.deep.equal(['print(0)', 'print(1)', 'print(2)']);
    expect(answer.steps.every((s) => s.status === 'ok')).to.be.true;
    expect(model.requests, 'three tool rounds, then one request for the answer').to.have.length(4);
    expect(model.requests.slice(0, 3).map((r) => r.body.tool_choice)).to.deep.equal([
      undefined,
      undefined,
      undefined,
    ]);
    expect(model.requests[3]?.body.tool_choice).to.equal('none');
    expect(textOf(lastOf(model.requests[3], 'tool'))).to.include('last tool round');
    expect(textOf(lastOf(model.requests[2], 'tool'))).not.to.include('last tool round');
    await t.api(`/api/chat/${answer.conversation_id}`, { method: 'DELETE' });
  });

  it('a timeout inside a tool call: the cell is interrupted and the model is told', async () => {
    model.reset((req, i) =>
      i === 0
        ? {
            tool_calls: [
              toolCall('run_python', {
                code: "import time\nprint('sleeping', flush=True)\ntime.sleep(30)",
                timeout_s: 1,
              }),
            ],
          }
        : { content: `Told: ${textOf(lastOf(req, 'tool'))}` },
    );
    const answer = await chatOk(t, { message: 'Sleep.', kernel_id: shared });
    const step = answer.steps[0];
    expect(step?.status).to.equal('timeout');
    expect(step?.error?.ename).to.equal('ExecutionTimeout');
    expect(step?.duration_ms).to.be.below(15_000);
    const told = textOf(lastOf(model.requests[1], 'tool'));
    expect(told)
      .to.match(/^status: timeout/)
      .and.match(/interrupted/)
      .and.include('(1 s)');
    expect((await kernelModel(t, shared)).execution_state).to.equal('idle');
    await t.api(`/api/chat/${answer.conversation_id}`, { method: 'DELETE' });
  });

  it('a client that disconnects mid-stream stops the loop and interrupts the execution; the kernel keeps its state', async () => {
    model.reset((req, i) => {
      if (i === 0)
        return {
          tool_calls: [
            toolCall('run_python', {
              code: "marker = 'kept'\nimport time\nprint('working', flush=True)\ntime.sleep(60)\nprint('finished')",
            }),
          ],
        };
      if (i === 1) return { tool_calls: [toolCall('run_python', { code: 'print(marker)' })] };
      return { content: textOf(lastOf(req, 'tool')) };
    });
    let conversationId = '';
    const events = await chatStream(
      t,
      { message: 'Work.', kernel_id: shared },
      {
        onEvent: (e) => {
          if (e.event === 'conversation') conversationId = String(e.data.conversation_id);
        },
        stopWhen: (e) =>
          e.event === 'tool_output' && (e.data.data as { text?: string }).text === 'working\n',
      },
    );
    expect(events.at(-1)?.event).to.equal('tool_output');
    await waitUntil(
      async () => !(await conversation(t, conversationId)).busy,
      'the turn to end after the client went away',
      20_000,
    );
    await waitUntil(
      async () => (await kernelModel(t, shared)).execution_state === 'idle',
      'the 60 s cell to be interrupted (kernel idle)',
      20_000,
    );
    expect(model.requests, 'no model request after the client left').to.have.length(1);
    const view = await conversation(t, conversationId);
    expect(view.messages.map((m) => m.role)).to.deep.equal(['user', 'assistant', 'tool']);
    expect(view.steps[0]).to.deep.include({ status: 'cancelled' });
    expect(textOf(view.messages[2] as never)).to.match(/^Interrupted: the request was cancelled/);

    // The conversation goes on, on the same kernel, state intact (interrupted, not killed).
    const answer = await chatOk(t, { message: 'And now?', conversation_id: conversationId });
    expect(answer.steps[0]?.outputs).to.deep.equal([
      { output_type: 'stream', name: 'stdout', text: 'kept\n' },
    ]);
    await t.api(`/api/chat/${conversationId}`, { method: 'DELETE' });
  });

  it('refuses a second turn while one runs (409)', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    model.reset(async () => {
      await gate;
      return { content: 'done' };
    });
    let id = '';
    const running = chatStream(
      t,
      { message: 'Slow.', kernel_id: shared },
      {
        onEvent: (e) => {
          if (e.event === 'conversation') id = String(e.data.conversation_id);
        },
      },
    );
    await waitUntil(() => id !== '' && model.requests.length === 1, 'the turn to reach the model');
    const refused = await chat(t, { message: 'Me too.', conversation_id: id });
    expect(refused.status).to.equal(409);
    expect(refused.body).to.deep.include({ reason: 'Conflict' });
    expect(String(refused.body.message)).to.match(/answering another request/);
    release();
    expect((await running).at(-1)?.event).to.equal('message');
    expect(model.requests, 'the refused turn never reached the model').to.have.length(1);
    await t.api(`/api/chat/${id}`, { method: 'DELETE' });
  });

  it('kernel death during a tool call: the model is told, and the conversation goes on on the restarted kernel', async () => {
    model.reset((req, i) => {
      if (i === 0)
        return {
          tool_calls: [
            toolCall('run_python', {
              code: 'x = 5\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)',
            }),
          ],
        };
      if (i === 1)
        return { tool_calls: [toolCall('run_python', { code: "print('x' in globals())" })] };
      return { content: 'The kernel restarted.' };
    });
    // The caller's kernel: the conversation restarts it too (same id, fresh sandbox).
    const before = t.gw.kernels.get(shared).sandboxId;
    const answer = await chatOk(t, { message: 'Crash it.', kernel_id: shared });
    expect(answer.steps.map((s) => s.status)).to.deep.equal(['killed', 'ok']);
    expect(answer.steps[0]?.error?.ename).to.equal('KernelDied');
    expect(answer.steps[1]?.outputs).to.deep.equal([
      { output_type: 'stream', name: 'stdout', text: 'False\n' },
    ]);
    expect(answer.steps.map((s) => s.kernel_id)).to.deep.equal([
      answer.kernel_id,
      answer.kernel_id,
    ]);
    const told = textOf(lastOf(model.requests[1], 'tool'));
    expect(told)
      .to.match(/^status: killed/)
      .and.include('restarted on a fresh sandbox');
    expect(answer.kernel_id).to.equal(shared);
    expect(t.gw.kernels.get(shared).sandboxId, 'a fresh sandbox').not.to.equal(before);
    expect((await kernelModel(t, shared)).execution_state).to.equal('idle');
    await t.api(`/api/chat/${answer.conversation_id}`, { method: 'DELETE' });
  });

  it('the model server answering 500: 502 {reason, message}, or an error event after the steps that ran', async () => {
    const overloaded = {
      status: 500,
      body: { error: { message: 'the model is overloaded', type: 'server_error' } },
    };
    model.reset(() => overloaded);
    const kernelsBefore = ((await (await t.api('/api/kernels')).json()) as unknown[]).length;
    const failed = await chat(t, { message: 'Hello?' });
    expect(failed.status).to.equal(502);
    expect(failed.body.reason).to.equal('Bad Gateway');
    expect(String(failed.body.message)).to.match(/answered 500.*the model is overloaded/);
    expect(failed.body, 'a failed first turn leaves no conversation').not.to.have.property(
      'conversation_id',
    );
    expect(((await (await t.api('/api/kernels')).json()) as unknown[]).length).to.equal(
      kernelsBefore,
    );

    model.reset((_req, i) =>
      i === 0 ? { tool_calls: [toolCall('run_python', { code: 'y = 1' })] } : overloaded,
    );
    const events = await chatStream(t, { message: 'Step, then fail.', kernel_id: shared });
    expect(events.map((e) => e.event)).to.deep.equal([
      'conversation',
      'tool_call',
      'tool_result',
      'error',
    ]);
    const error = events.at(-1)?.data ?? {};
    expect(error.reason).to.equal('Bad Gateway');
    expect(String(error.message)).to.match(/answered 500/);
    const id = String(error.conversation_id);
    const view = await conversation(t, id);
    expect(view.busy).to.equal(false);
    expect(view.messages.map((m) => m.role)).to.deep.equal(['user', 'assistant', 'tool']);
    await t.api(`/api/chat/${id}`, { method: 'DELETE' });
  });
});

describe('POST /api/chat: the API key stays out of sandboxes and logs (docker)', function () {
  this.timeout(180_000);
  const lines: string[] = [];
  let model: ScriptedModel;
  let t: TestGateway;
  let keyDir: string;
  const key = `sk-test-${randomBytes(24).toString('hex')}`;

  before(async () => {
    model = await ScriptedModel.start();
    keyDir = mkdtempSync('/tmp/aido-key-');
    writeFileSync(`${keyDir}/key`, `${key}\n`);
    chmodSync(`${keyDir}/key`, 0o600);
    const logger = createLogger('debug', {
      write(s: string) {
        lines.push(s);
      },
    });
    t = await startTestGateway(
      {
        llmBaseUrl: model.baseUrl,
        llmModel: 'scripted-model',
        llmApiKeyFile: `${keyDir}/key`,
        llmMaxRetries: 0,
        logLevel: 'debug',
      },
      { logger },
    );
  });

  after(async () => {
    await t.close();
    await model.close();
    rmSync(keyDir, { recursive: true, force: true });
  });

  it('is sent to the model server only: not in the sandbox env, run dir or files, not in logs, health or history', async () => {
    // The sandbox reports everything it can see; the test looks for the key in that.
    const code = String.raw`
import glob, json, os
seen = {}
for root in ['/run/kernel', '/workspace', '/tmp']:
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            try:
                with open(p, 'rb') as f:
                    seen[p] = f.read(1_000_000).decode('latin-1')
            except OSError as e:
                seen[p] = 'unreadable: ' + type(e).__name__
for p in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):
    try:
        with open(p, 'rb') as f:
            seen[p] = f.read().decode('latin-1')
    except OSError as e:
        seen[p] = 'unreadable: ' + type(e).__name__
print(json.dumps({'env': dict(os.environ), 'files': seen}))
import matplotlib.pyplot as plt
plt.plot([1, 2, 3]); plt.show()`;
    model.reset((_req, i) =>
      i === 0 ? { tool_calls: [toolCall('run_python', { code })] } : { content: 'Looked.' },
    );
    const answer = await chatOk(t, { message: 'Look around.' });
    expect(answer.steps[0]?.status).to.equal('ok');
    const stdout = answer.steps[0]?.outputs.find((o) => o.output_type === 'stream');
    const report = JSON.parse(stdout?.output_type === 'stream' ? stdout.text : '{}') as {
      env: Record<string, string>;
      files: Record<string, string>;
    };
    expect(report.env, 'the scan ran').to.have.property('PATH');
    expect(Object.keys(report.files), 'the run dir was read').to.include(
      '/run/kernel/connection.json',
    );
    expect(JSON.stringify(report)).not.to.include(key);
    expect(JSON.stringify(report)).not.to.include(`${keyDir}/key`);

    // Docker's own record of the sandbox: env and command line.
    const kernel = t.gw.kernels.get(String(answer.kernel_id));
    const info = await new Docker({ socketPath: t.gw.config.dockerSocket })
      .getContainer(String(kernel.sandboxId))
      .inspect();
    expect(JSON.stringify([info.Config.Env, info.Config.Cmd, info.Args])).not.to.include(key);

    // The key went where it belongs.
    expect(model.requests[0]?.headers.authorization).to.equal(`Bearer ${key}`);
    // Without image input, the model gets a note instead of the plot.
    expect(textOf(lastOf(model.requests[1], 'tool'))).to.match(/images are not sent to you/);
    expect(JSON.stringify(model.requests[1]?.body.messages)).not.to.include('image_url');

    const health = await (await t.api('/api/security/health')).text();
    expect(health).not.to.include(key);
    const history = await (await t.api(`/api/chat/${answer.conversation_id}`)).text();
    expect(history).not.to.include(key);
    expect(
      lines.some((l) => l.includes('"chat turn answered"') && l.includes(answer.conversation_id)),
      'the turn was logged',
    ).to.equal(true);
    expect(lines.join('')).not.to.include(key);
    await t.api(`/api/chat/${answer.conversation_id}`, { method: 'DELETE' });
  });
});

describe('POST /api/chat: unconfigured, unreachable or silent model server, bad requests, auth (docker)', function () {
  this.timeout(60_000);
  let unconfigured: TestGateway;
  let unreachable: TestGateway;
  let silentModel: ScriptedModel;
  let silent: TestGateway;

  before(async () => {
    // A loopback port that nothing listens on any more.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) =>
      probe.close(() => {
        r();
      }),
    );
    unconfigured = await startTestGateway();
    unreachable = await startTestGateway({
      llmBaseUrl: `http://127.0.0.1:${port}/v1`,
      llmModel: 'nobody',
      llmMaxRetries: 0,
    });
    silentModel = await ScriptedModel.start();
    silent = await startTestGateway({
      llmBaseUrl: silentModel.baseUrl,
      llmModel: 'silent',
      llmMaxRetries: 0,
      llmTimeoutS: 1,
    });
  });

  after(async () => {
    await unconfigured.close();
    await unreachable.close();
    await silent.close();
    await silentModel.close();
  });

  it('answers 503 and says what to set when no model server is configured', async () => {
    const r = await chat(unconfigured, { message: 'hi' });
    expect(r.status).to.equal(503);
    expect(r.body.reason).to.equal('Service Unavailable');
    expect(String(r.body.message)).to.include('AIDO_LLM_BASE_URL').and.include('AIDO_LLM_MODEL');
    expect((await unconfigured.api('/api/chat/anything')).status).to.equal(503);
  });

  it('an unreachable model server: 502 or an error event, and nothing left running', async () => {
    const r = await chat(unreachable, { message: 'hi' });
    expect(r.status).to.equal(502);
    expect(r.body.reason).to.equal('Bad Gateway');
    expect(String(r.body.message)).to.match(/could not be reached \(ECONNREFUSED\)/);
    const events = await chatStream(unreachable, { message: 'hi' });
    expect(events.map((e) => e.event)).to.deep.equal(['conversation', 'error']);
    expect(events[1]?.data.reason).to.equal('Bad Gateway');
    expect(await (await unreachable.api('/api/kernels')).json()).to.deep.equal([]);
    expect(await unreachable.gw.runtime.list()).to.deep.equal([]);
  });

  it('a model server that does not answer within AIDO_LLM_TIMEOUT: 504, and the request to it is dropped', async () => {
    silentModel.reset(() => ({ hang: true }));
    const r = await chat(silent, { message: 'hi' });
    expect(r.status).to.equal(504);
    expect(r.body.reason).to.equal('Gateway Timeout');
    expect(String(r.body.message)).to.match(/did not answer within AIDO_LLM_TIMEOUT \(1 s\)/);
    await waitUntil(() => silentModel.abandoned === 1, 'the gateway to drop the model request');
  });

  it('a client that leaves while the model streams: the model request is dropped and nothing is kept', async () => {
    silentModel.reset(() => ({ hang: true }));
    let id = '';
    const events = await chatStream(
      silent,
      { message: 'hi' },
      {
        stopWhen: (e) => {
          id = String(e.data.conversation_id);
          return e.event === 'conversation';
        },
      },
    );
    expect(events.map((e) => e.event)).to.deep.equal(['conversation']);
    await waitUntil(() => silentModel.requests.length === 1, 'the model request');
    await waitUntil(() => silentModel.abandoned === 1, 'the gateway to drop the model request');
    await waitUntil(
      async () => (await silent.api(`/api/chat/${id}`)).status === 404,
      'the empty conversation to be dropped',
    );
  });

  it('DELETE during a turn ends it: the model request is dropped and the client is told', async () => {
    silentModel.reset(() => ({ hang: true }));
    let id = '';
    const running = chatStream(
      silent,
      { message: 'hi' },
      {
        onEvent: (e) => {
          if (e.event === 'conversation') id = String(e.data.conversation_id);
        },
      },
    );
    await waitUntil(() => id !== '' && silentModel.requests.length === 1, 'the model request');
    expect((await silent.api(`/api/chat/${id}`, { method: 'DELETE' })).status).to.equal(204);
    const events = await running;
    expect(events.map((e) => e.event)).to.deep.equal(['conversation', 'error']);
    expect(events[1]?.data.reason).to.equal('Not Found');
    expect(String(events[1]?.data.message)).to.match(/was ended .* while this request ran/);
    await waitUntil(() => silentModel.abandoned === 1, 'the gateway to drop the model request');
  });

  it('refuses bad requests with {reason, message}', async () => {
    for (const [body, status, pattern] of [
      [{}, 400, /either "message"/],
      [{ message: 'a', messages: [{ role: 'user', content: 'b' }] }, 400, /either "message"/],
      [{ messages: [{ role: 'tool', content: 'forged' }] }, 400, /messages\.0\.role/],
      [{ message: 'a', extra: 1 }, 400, /extra/],
      [{ message: 'a', conversation_id: 'nope' }, 404, /Conversation does not exist/],
      [
        { message: 'a', kernel_id: '00000000-0000-4000-8000-000000000000' },
        404,
        /Kernel does not exist/,
      ],
    ] as const) {
      const r = await chat(unreachable, body);
      expect(r.status, JSON.stringify(body)).to.equal(status);
      expect(String(r.body.message)).to.match(pattern);
      expect(r.body).to.have.property('reason');
    }
    const bad = await unreachable.api('/api/chat', { method: 'POST', body: '{not json' });
    expect(bad.status).to.equal(400);
  });

  it('needs the token like every other endpoint', async () => {
    for (const [method, path] of [
      ['POST', '/api/chat'],
      ['GET', '/api/chat/x'],
      ['DELETE', '/api/chat/x'],
    ] as const) {
      const res = await fetch(`${unreachable.base}${path}`, {
        method,
        headers: { 'Content-Type': 'application/json' },
        ...(method === 'POST' ? { body: JSON.stringify({ message: 'hi' }) } : {}),
      });
      expect(res.status, `${method} ${path}`).to.equal(401);
    }
  });
});
