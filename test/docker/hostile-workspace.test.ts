/**
 * A hostile kernel against the gateway's reads of its sandbox, its helper execs, the execution
 * deadline and the MCP endpoint: each attack runs from inside a real kernel of a real gateway.
 * A sparse 3 GiB file (413 at once, gateway memory flat), a download streamed rather than held, a
 * kernel that SIGSTOPs every workspace helper (504 within the cap, helper killed, later requests
 * fine, agent executions still answer), processes and threads left burning CPU after the deadline
 * (the sandbox goes quiet), and MCP sessions past the cap.
 */
import { performance } from 'node:perf_hooks';
import { expect } from 'chai';
import Docker from 'dockerode';
import { createMessage } from '../../protocol/index.js';
import type { ExecutionDocument } from '../../gateway/agent/agent-execution.js';
import { runningContainers, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { isGatewayNotice, stdout, TestClient } from '../helpers/ws-client.js';
import { waitUntil } from '../helpers/wait.js';

const MiB = 1024 ** 2;
/** The helper-exec wall-time cap of this file's gateway. */
const EXEC_TIMEOUT_S = 8;
/** The execution deadline of this file's gateway. */
const DEADLINE_S = 3;
const MAX_MCP_SESSIONS = 3;

/**
 * Kernel code: a thread of the kernel that SIGSTOPs every workspace helper it sees (they run as
 * the kernel's uid), until `_aido_stopper['on']` is cleared.
 */
const STOP_HELPERS = `
import os, signal, threading, time
_aido_stopper = {'on': True, 'stopped': 0}
def _aido_stop_loop():
    me = os.getpid()
    while _aido_stopper['on']:
        for p in os.listdir('/proc'):
            if not p.isdigit() or int(p) == me: continue
            try:
                with open('/proc/%s/cmdline' % p, 'rb') as f: cmd = f.read()
                with open('/proc/%s/stat' % p) as f: state = f.read().rsplit(')', 1)[1].split()[0]
            except OSError:
                continue
            if cmd.startswith(b'python3\\0-I\\0-S\\0-c\\0') and state != 'T':
                try:
                    os.kill(int(p), signal.SIGSTOP)
                    _aido_stopper['stopped'] += 1
                except OSError:
                    pass
        time.sleep(0.002)
threading.Thread(target=_aido_stop_loop, daemon=True).start()
`;

/** Kernel code: the helpers left in the sandbox that are stopped (state T). */
const STOPPED_HELPERS = `
import os
_n = 0
for _p in os.listdir('/proc'):
    try:
        with open('/proc/%s/cmdline' % _p, 'rb') as f: _cmd = f.read()
        with open('/proc/%s/stat' % _p) as f: _st = f.read().rsplit(')', 1)[1].split()[0]
    except OSError:
        continue
    if _cmd.startswith(b'python3\\0-I\\0-S\\0-c\\0') and _st == 'T': _n += 1
print('stopped helpers:', _n)
`;

/** A process in a session of its own (so the interrupt's SIGINT to the group misses it), busy. */
const BACKGROUND_PROCESS = `
import subprocess
subprocess.Popen(['python3', '-c', 'import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\\nwhile True: pass'], start_new_session=True)
`;
/** A thread of the kernel, busy: an interrupt reaches only the main thread. */
const BACKGROUND_THREAD = `
import threading
def _aido_burn():
    while True: pass
threading.Thread(target=_aido_burn, daemon=True).start()
`;

/** Runs code over the channels (no workspace snapshots around it); fails unless it ran ok. */
async function runWs(client: TestClient, code: string, timeoutMs = 30_000): Promise<string> {
  const r = await client.request(
    'shell',
    'execute_request',
    { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false },
    timeoutMs,
  );
  expect(r.reply.content.status, JSON.stringify(r.reply.content)).to.equal('ok');
  return stdout(r);
}

/** Tracks the in-process gateway's peak RSS while `fn` runs. */
async function peakRss<T>(fn: () => Promise<T>): Promise<{ value: T; growth: number }> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  try {
    const value = await fn();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { value, growth: peak - base };
  } finally {
    clearInterval(timer);
  }
}

/** CPU time (ns) a container has used, as Docker reports it from the host. */
async function cpuNs(docker: Docker, containerId: string): Promise<number> {
  const s = (await docker.getContainer(containerId).stats({ stream: false })) as {
    cpu_stats?: { cpu_usage?: { total_usage?: number } };
  };
  const ns = s.cpu_stats?.cpu_usage?.total_usage;
  if (ns === undefined) throw new Error(`no CPU stats for container ${containerId}`);
  return ns;
}

/** Cores a container uses on average over `ms`. */
async function coresUsed(docker: Docker, containerId: string, ms = 1500): Promise<number> {
  const a = await cpuNs(docker, containerId);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const b = await cpuNs(docker, containerId);
  return (b - a) / ((performance.now() - t0) * 1e6);
}

describe('hostile kernel: sandbox reads, helper execs, deadline, MCP (docker)', function () {
  this.timeout(180_000);
  let t: TestGateway;
  const docker = new Docker();

  before(async () => {
    t = await startTestGateway({
      sandboxExecTimeoutS: EXEC_TIMEOUT_S,
      maxDownloadBytes: 128 * MiB,
      execTimeoutS: DEADLINE_S,
      // The interrupt is slow on a loaded host; the kill path is not what these tests are about.
      killGraceS: 10,
      maxMcpSessions: MAX_MCP_SESSIONS,
    });
  });
  after(async () => {
    await t.close();
  });

  describe('workspace reads', () => {
    let id: string;
    let client: TestClient;
    before(async () => {
      ({ id } = await t.startKernel());
      client = await TestClient.connect(`${t.wsBase}/api/kernels/${id}/channels`, {
        token: t.token,
      });
    });
    after(() => {
      client.close();
    });

    it('a sparse 3 GiB file: 413 with {reason, message} at once, gateway memory flat', async () => {
      await runWs(client, "with open('/workspace/huge.bin', 'wb') as f: f.truncate(3 << 30)");
      const t0 = performance.now();
      const { value: res, growth } = await peakRss(() =>
        t.api(`/api/kernels/${id}/files/huge.bin`, { signal: AbortSignal.timeout(20_000) }),
      );
      const body = (await res.json()) as { reason?: string; message?: string };
      const ms = performance.now() - t0;
      console.log(
        `      sparse 3 GiB: ${res.status} in ${ms.toFixed(0)} ms, gateway RSS +${(growth / MiB).toFixed(1)} MiB`,
      );
      expect(res.status, JSON.stringify(body)).to.equal(413);
      expect(body.reason).to.be.a('string');
      expect(body.message).to.match(/3221225472 bytes.*limit is 134217728/);
      expect(ms, 'answered before the wall-time cap').to.be.below(EXEC_TIMEOUT_S * 1000);
      expect(growth, 'gateway RSS growth').to.be.below(64 * MiB);
    });

    it('a 48 MiB file is streamed, not held: gateway memory stays well under its size', async () => {
      await runWs(client, "with open('/workspace/big.bin', 'wb') as f: f.truncate(48 << 20)");
      const { value: got, growth } = await peakRss(async () => {
        const res = await t.api(`/api/kernels/${id}/files/big.bin`, {
          signal: AbortSignal.timeout(30_000),
        });
        expect(res.status).to.equal(200);
        expect(res.headers.get('content-length')).to.equal(String(48 * MiB));
        let n = 0;
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>)
          n += chunk.length;
        return n;
      });
      console.log(`      48 MiB download: gateway RSS +${(growth / MiB).toFixed(1)} MiB`);
      expect(got).to.equal(48 * MiB);
      expect(growth, 'gateway RSS growth while streaming 48 MiB').to.be.below(40 * MiB);
    });

    it('a kernel that SIGSTOPs the helper: 504 within the cap, helper killed, later requests work', async () => {
      await runWs(client, STOP_HELPERS);
      const t0 = performance.now();
      const res = await t.api(`/api/kernels/${id}/files`, {
        signal: AbortSignal.timeout((EXEC_TIMEOUT_S + 20) * 1000),
      });
      const ms = performance.now() - t0;
      const body = (await res.json()) as { reason?: string; message?: string };
      console.log(`      stopped helper: ${res.status} after ${(ms / 1000).toFixed(2)} s`);
      expect(res.status, JSON.stringify(body)).to.equal(504);
      expect(body.message).to.match(/did not finish within 8 s/);
      expect(ms).to.be.below((EXEC_TIMEOUT_S + 3) * 1000);
      expect(await runWs(client, "print('helpers stopped:', _aido_stopper['stopped'])")).to.match(
        /helpers stopped: [1-9]/,
      );

      // The agent execution's snapshots go through the same helper: it still answers.
      const t1 = performance.now();
      const exec = await t.api(`/api/kernels/${id}/execute`, {
        method: 'POST',
        body: JSON.stringify({ code: '40 + 2' }),
        signal: AbortSignal.timeout((2 * EXEC_TIMEOUT_S + 20) * 1000),
      });
      const doc = (await exec.json()) as ExecutionDocument;
      expect(exec.status).to.equal(200);
      expect(doc.status).to.equal('ok');
      expect(JSON.stringify(doc.outputs)).to.include('42');
      expect(doc.artifacts_error).to.match(/could not be listed/);
      expect(performance.now() - t1).to.be.below((2 * EXEC_TIMEOUT_S + 5) * 1000);

      await runWs(client, "_aido_stopper['on'] = False");
      // Killed from outside: no stopped helper is left in the sandbox.
      expect(await runWs(client, STOPPED_HELPERS)).to.include('stopped helpers: 0');
      const again = await t.api(`/api/kernels/${id}/files`);
      expect(again.status).to.equal(200);
      const listing = (await again.json()) as { entries: { name: string }[] };
      expect(listing.entries.map((e) => e.name)).to.include('big.bin');
    });
  });

  describe('deadline completeness', () => {
    /** Runs `code` past the deadline over a fresh client and waits for the timeout's reply. */
    async function overrunDeadline(code: string): Promise<{
      id: string;
      client: TestClient;
      before: string;
    }> {
      const { id } = await t.startKernel();
      const client = await TestClient.connect(`${t.wsBase}/api/kernels/${id}/channels`, {
        token: t.token,
      });
      const [before] = await runningContainers(t, id);
      const req = createMessage({
        msgType: 'execute_request',
        channel: 'shell',
        session: client.session,
        content: { code: `${code}\nimport time; time.sleep(600)`, silent: false },
      });
      client.send(req);
      await client.waitFor(
        (m) =>
          m.header.msg_type === 'execute_reply' && m.parent_header.msg_id === req.header.msg_id,
        'the execute_reply of the execution the deadline ended',
        (DEADLINE_S + 15) * 1000,
      );
      expect(before).to.be.a('string');
      return { id, client, before: before ?? '' };
    }

    /** Waits until the sandbox now serving `id` uses (almost) no CPU. */
    async function waitQuiet(id: string): Promise<string> {
      let last = '';
      await waitUntil(
        async () => {
          const [c] = await runningContainers(t, id);
          if (!c) return false;
          last = c;
          // A sandbox being replaced has no stats any more: measure the next one.
          const cores = await coresUsed(docker, c).catch(() => Infinity);
          return cores < 0.1;
        },
        'the sandbox to stop using CPU after the deadline',
        30_000,
        0,
      );
      return last;
    }

    it('a background process left burning after the deadline is killed; the kernel stays', async () => {
      const { id, client, before } = await overrunDeadline(BACKGROUND_PROCESS);
      const now = await waitQuiet(id);
      expect(now, 'same sandbox (no restart needed)').to.equal(before);
      expect(await runWs(client, "print('alive')")).to.include('alive');
      client.close();
    });

    it('a background thread left burning: the kernel is restarted on a fresh sandbox, with a notice', async () => {
      const { id, client, before } = await overrunDeadline(BACKGROUND_THREAD);
      const notice = await client.waitFor(
        (m) => isGatewayNotice(m) && /CPU/.test(String(m.content.text)),
        'the notice that the kernel is restarted for CPU used past the deadline',
        30_000,
      );
      expect(String(notice.content.text)).to.match(/restart/i);
      const now = await waitQuiet(id);
      expect(now, 'a fresh sandbox').to.not.equal(before);
      client.close();
    });
  });

  describe('MCP sessions', () => {
    const initialize = (): Promise<Response> =>
      t.api('/mcp', {
        method: 'POST',
        headers: { Accept: 'application/json, text/event-stream' },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: {
            protocolVersion: '2025-03-26',
            capabilities: {},
            clientInfo: { name: 'hostile', version: '1' },
          },
        }),
        signal: AbortSignal.timeout(10_000),
      });

    it('refuses a session past the cap with an MCP error; a closed one frees its place', async () => {
      const ids: string[] = [];
      for (let i = 0; i < MAX_MCP_SESSIONS; i++) {
        const res = await initialize();
        expect(res.status).to.equal(200);
        ids.push(res.headers.get('mcp-session-id') ?? '');
        await res.body?.cancel();
      }
      const refused = await initialize();
      expect(refused.status).to.equal(503);
      const body = (await refused.json()) as { jsonrpc?: string; error?: { message?: string } };
      expect(body.jsonrpc).to.equal('2.0');
      expect(body.error?.message).to.match(/AIDO_MAX_MCP_SESSIONS/);
      const del = await t.api('/mcp', {
        method: 'DELETE',
        headers: { 'Mcp-Session-Id': ids[0] ?? '' },
      });
      expect(del.status).to.equal(200);
      const next = await initialize();
      expect(next.status).to.equal(200);
      await next.body?.cancel();
    });
  });
});
