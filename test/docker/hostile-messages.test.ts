/**
 * A hostile kernel attacks the gateway through messages and buffers, from inside its own sandbox:
 * it reads its key from its session, signs whatever it likes and publishes it on its own iopub
 * socket. Each attack must leave the gateway's memory, log and file descriptors bounded and every
 * other kernel and client unaffected; the attacker is reported and, for protocol abuse, killed.
 *
 * The figures each test measured are printed (`[hostile] …`) and quoted in SECURITY.md.
 */
import { readdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { expect } from 'chai';
import { createLogger } from '../../gateway/base/logger.js';
import { executeRequest } from '../../protocol/index.js';
import { kernelModel, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { waitUntil } from '../helpers/wait.js';
import { isGatewayNotice, TestClient } from '../helpers/ws-client.js';

/**
 * Kernel-side helper: builds one message's frames by hand (any part any size, signed with the
 * kernel's own key or not) and publishes it `count` times on the kernel's iopub socket, in a
 * thread so the execution that starts it returns at once (or inline, `wait=True`).
 */
const ATTACK_KIT = String.raw`
import json, threading, time, uuid
def _aido_publish(parent=b'{}', msg_type='stream', content=b'{"name":"stdout","text":"x"}',
                  buffers=(), count=1, delay=0.0, signed=True, wait=False, done=None):
    k = get_ipython().kernel
    s = k.session
    header = json.dumps({'msg_id': uuid.uuid4().hex, 'msg_type': msg_type, 'session': s.session,
                         'username': 'x', 'date': '2026-01-01T00:00:00Z',
                         'version': '5.3'}).encode()
    parts = [header, parent, b'{}', content]
    sig = s.sign(parts) if signed else b'0' * 64
    frames = [b'kernel.attack.' + msg_type.encode()[:20], b'<IDS|MSG>', sig] + parts + list(buffers)
    t = k.iopub_thread
    def send():
        # On the iopub thread, zero-copy: every queued copy shares these bytes, so the kernel's
        # own memory stays flat however many are waiting.
        t.socket.send_multipart(frames, copy=False)
    def run():
        for _ in range(count):
            t.schedule(send)
            if delay:
                time.sleep(delay)
        if done is not None:
            done()
    if wait:
        run()
    else:
        threading.Thread(target=run, daemon=True).start()
def _aido_parent(pad):
    return (b'{"msg_id":"p","msg_type":"execute_request","session":"s","username":"",'
            b'"date":"","version":"5.3","pad":"' + pad + b'"}')
`;

const MiB = 1024 ** 2;
const ABUSE_LIMIT = 5;

function rss(): number {
  return process.memoryUsage().rss;
}

/** Samples the in-process gateway's RSS every 50 ms until stopped; returns the peak. */
function rssPeak(): { stop: () => number } {
  let peak = rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, rss());
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rss());
    },
  };
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Runs `pass` on `client` until `until()` is true; returns the slowest round trip in ms. */
async function roundTrips(client: TestClient, until: () => boolean): Promise<number> {
  let worst = 0;
  do {
    const t0 = performance.now();
    const r = await client.execute('pass', 10_000);
    expect(r.reply.content.status).to.equal('ok');
    worst = Math.max(worst, performance.now() - t0);
  } while (!until());
  return worst;
}

/**
 * Starts an attack and waits for its execute_reply only: an attack on iopub may cost the attacker
 * its own idle status (its PUB drops what its subscriber cannot take), so that is not waited for.
 */
async function launch(client: TestClient, code: string): Promise<void> {
  const msg = executeRequest(client.session, code);
  client.send(msg);
  const reply = await client.waitFor(
    (m) =>
      m.header.msg_type === 'execute_reply' &&
      (m.parent_header as { msg_id?: string }).msg_id === msg.header.msg_id,
    'the execute_reply of the attack',
    60_000,
  );
  expect(reply.content.status).to.equal('ok');
}

function figure(text: string): void {
  console.log(`      [hostile] ${text}`);
}

describe('hostile kernel: messages and buffers (real sandboxes)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  let bystander: TestClient;

  before(async () => {
    // A lower abuse limit than the default (20) only to keep the attacks short on a busy machine.
    t = await startTestGateway({ kernelAbuseLimit: ABUSE_LIMIT });
    const k = await t.startKernel();
    bystander = await TestClient.connect(`${t.wsBase}/api/kernels/${k.id}/channels`, {
      token: t.token,
    });
    expect((await bystander.execute('pass')).reply.content.status).to.equal('ok');
  });
  after(async () => {
    bystander.close();
    await t.close();
  });

  async function attacker(): Promise<{ id: string; client: TestClient }> {
    const k = await t.startKernel();
    const client = await TestClient.connect(`${t.wsBase}/api/kernels/${k.id}/channels`, {
      token: t.token,
    });
    const r = await client.execute(ATTACK_KIT);
    expect(r.reply.content.status).to.equal('ok');
    return { id: k.id, client };
  }

  let slowKernel: string;

  it('a client that never reads while its kernel prints 200 MB is dropped at the buffer cap; others are fine', async () => {
    const k = await t.startKernel();
    slowKernel = k.id;
    const url = `${t.wsBase}/api/kernels/${k.id}/channels`;
    const slow = await TestClient.connect(url, { token: t.token });
    const kernel = t.gw.kernels.get(k.id);
    expect(kernel.connections).to.equal(1);
    const base = rss();
    const peak = rssPeak();
    const started = performance.now();
    slow.send(
      executeRequest(
        slow.session,
        // 1 MiB stream messages (flushed one by one: a single 200 MB message would be over the
        // ZeroMQ message size limit, which is another test).
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(200):\n    sys.stdout.write(chunk)\n    sys.stdout.flush()",
      ),
    );
    // The client stops reading: its TCP window closes and the gateway's send buffer fills.
    (slow.ws as unknown as { _socket: Socket })._socket.pause();
    await waitUntil(() => kernel.connections === 0, 'the gateway to drop the slow client', 60_000);
    const droppedAfter = performance.now() - started;
    const worst = await roundTrips(bystander, () => true);
    const growth = peak.stop() - base;
    figure(
      `slow client: dropped after ${(droppedAfter / 1000).toFixed(1)} s, gateway RSS +${(growth / MiB).toFixed(0)} MiB, bystander pass ${worst.toFixed(0)} ms`,
    );
    expect(growth, 'gateway RSS growth').to.be.below(180 * MiB);
    // The same session reconnecting is told that output went missing.
    const again = await TestClient.connect(url, { token: t.token, session: slow.session });
    await again.waitFor(
      (m) => isGatewayNotice(m) && String(m.content.text).includes('did not read its messages'),
      'the gap notice on reconnect',
    );
    const metrics = await (await t.api('/metrics')).text();
    expect(metrics).to.match(/^aido_websocket_slow_client_drops_total [1-9]/m);
    slow.ws.terminate();
    again.close();
  });

  it('session_id churn keeps file descriptors bounded (oldest disconnected sessions evicted)', async () => {
    const url = `${t.wsBase}/api/kernels/${slowKernel}/channels`;
    const before = openFds();
    for (let i = 0; i < 100; i++) {
      const c = await TestClient.connect(url, { token: t.token, session: `churn-${i}` });
      const closed = c.closed;
      c.close();
      await closed;
    }
    const growth = openFds() - before;
    figure(`session churn: 100 session_ids → +${growth} fds (cap 32 sessions per kernel)`);
    // 32 sessions × 3 sockets (and libzmq's per-socket descriptors), not 100 × 3.
    expect(growth).to.be.below(250);
    expect((await bystander.execute('pass')).reply.content.status).to.equal('ok');
  });

  it('huge signed parent headers: no stall for others, bounded memory, the attacker killed for protocol abuse', async () => {
    const a = await attacker();
    const base = rss();
    const peak = rssPeak();
    // 20 MB parent headers, properly signed, 20 a second until the gateway kills the kernel.
    await launch(
      a.client,
      "_aido_publish(parent=_aido_parent(b'A' * 20_000_000), count=200, delay=0.05)",
    );
    let killed = false;
    const [worst] = await Promise.all([
      roundTrips(bystander, () => killed),
      waitUntil(
        async () => (killed = (await kernelModel(t, a.id)).execution_state === 'dead'),
        'the attacker to be killed',
        90_000,
      ),
    ]);
    const worstAfter = await roundTrips(bystander, () => true);
    const growth = peak.stop() - base;
    const model = await kernelModel(t, a.id);
    figure(
      `20 MB parent headers: attacker killed (${model.reason}), gateway RSS +${(growth / MiB).toFixed(0)} MiB, bystander pass worst ${Math.max(worst, worstAfter).toFixed(0)} ms`,
    );
    expect(model.reason).to.match(/^protocol abuse: /);
    expect(Math.max(worst, worstAfter), 'bystander round trip (ms)').to.be.below(2000);
    expect(growth, 'gateway RSS growth').to.be.below(600 * MiB);
    await a.client.waitFor(
      (m) => isGatewayNotice(m) && String(m.content.text).includes('protocol abuse'),
      "the attacker's client to be told",
    );
    const health = (await (await t.api('/api/security/health')).json()) as {
      inbound: { kernels_with_violations: { kernel_id: string; violations: number }[] };
    };
    const entry = health.inbound.kernels_with_violations.find((v) => v.kernel_id === a.id);
    expect(entry?.violations).to.be.at.least(ABUSE_LIMIT);
    const metrics = await (await t.api('/metrics')).text();
    expect(metrics).to.match(
      /^aido_kernel_protocol_violations_total\{code="FRAME_TOO_LARGE"\} [1-9]/m,
    );
    expect(metrics).to.match(/^aido_kernel_kills_total\{cause="abuse"\} [1-9]/m);
    a.client.close();
  });

  it('frames over the ZeroMQ size limit: dropped by libzmq, the attacker killed, others unaffected', async () => {
    const a = await attacker();
    const base = rss();
    const peak = rssPeak();
    // A 70 MB buffer frame, over AIDO_ZMQ_MAX_MESSAGE_SIZE (64 MiB): libzmq drops the connection.
    await launch(a.client, "_aido_publish(buffers=[b'B' * 70_000_000], count=1000, delay=0.05)");
    let killed = false;
    const [worst] = await Promise.all([
      roundTrips(bystander, () => killed),
      waitUntil(
        async () => (killed = (await kernelModel(t, a.id)).execution_state === 'dead'),
        'the attacker to be killed',
        90_000,
      ),
    ]);
    const growth = peak.stop() - base;
    const model = await kernelModel(t, a.id);
    figure(
      `70 MB frames: attacker killed (${model.reason}), gateway RSS +${(growth / MiB).toFixed(0)} MiB, bystander pass worst ${worst.toFixed(0)} ms`,
    );
    expect(model.reason).to.match(/^protocol abuse: /);
    expect(worst).to.be.below(2000);
    expect(growth).to.be.below(300 * MiB);
    a.client.close();
  });
});

describe('hostile kernel: log flood (real sandbox)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  let bytes = 0;
  let longest = 0;
  let lines = 0;

  before(async () => {
    const logger = createLogger('info', {
      write(s: string) {
        bytes += Buffer.byteLength(s);
        longest = Math.max(longest, s.length);
        lines++;
      },
    });
    // Report only: this kernel must keep flooding for the whole measurement.
    t = await startTestGateway({ logLevel: 'info', kernelAbuseLimit: 0 }, { logger });
  });
  after(async () => {
    await t.close();
  });

  it('writes a bounded number of log bytes per second, however the kernel floods', async () => {
    const k = await t.startKernel();
    const url = `${t.wsBase}/api/kernels/${k.id}/channels`;
    // A legacy client: messages it cannot be sent as one JSON text are dropped with a warning.
    const legacy = await TestClient.connect(url, { token: t.token, protocol: 'legacy' });
    expect((await legacy.execute(ATTACK_KIT)).reply.content.status).to.equal('ok');
    const before = { bytes, lines };
    const t0 = performance.now();
    await launch(
      legacy,
      [
        // A 1 MiB msg_type, signed.
        "_aido_publish(msg_type='m' * (1 << 20), count=50, delay=0.005, wait=True)",
        // A 30 kB msg_type and content that is not a JSON object (refused for legacy clients).
        "_aido_publish(msg_type='n' * 30_000, content=b'[]', count=200, delay=0.002, wait=True)",
        // Badly signed messages.
        '_aido_publish(count=1000, signed=False, delay=0.002, wait=True)',
        // Then a valid marker, a few times (the kernel's PUB drops what its queue cannot take):
        // iopub is ordered, so once it arrives the gateway has handled the whole flood.
        '_aido_publish(content=b\'{"name":"stdout","text":"FLOOD-DONE"}\', count=50, delay=0.1)',
      ].join('\n'),
    );
    await legacy.waitFor(
      (m) => m.header.msg_type === 'stream' && m.content.text === 'FLOOD-DONE',
      'the end-of-flood marker',
      60_000,
    );
    const received = t.gw.kernels.get(k.id).gate.report().violations_total;
    const seconds = (performance.now() - t0) / 1000;
    const written = bytes - before.bytes;
    figure(
      `log flood: ${received} refused messages and 200 legacy-unsendable ones → ${lines - before.lines} lines, ${written} bytes in ${seconds.toFixed(1)} s (${(written / seconds / 1024).toFixed(1)} KiB/s), longest line ${longest} chars`,
    );
    expect(longest, 'longest log line').to.be.below(4096);
    expect(written / Math.max(seconds, 1), 'log bytes per second').to.be.below(16 * 1024);
    legacy.close();
  });
});
