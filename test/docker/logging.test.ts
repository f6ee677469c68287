/**
 * Structured logs through a kernel's life at level debug (start, a channels connect with ?token=,
 * an execution, a 404, a shutdown, the gateway's close): every line is one JSON object, every line
 * about a kernel names it (`kernel`) and its client session where there is one (`session`), and
 * neither the auth token nor the kernel's HMAC key appears anywhere — not even when a line logs
 * the connection info or the configuration object by mistake.
 */
import { expect } from 'chai';
import { createLogger } from '../../gateway/base/logger.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { TestClient } from '../helpers/ws-client.js';

/** Messages about the gateway as a whole, not about one kernel. */
const GATEWAY_WIDE = new Set(['all kernels removed', 'careless config line']);

describe('structured logs (real kernel)', function () {
  this.timeout(60_000);
  const lines: string[] = [];
  let t: TestGateway;
  let kernelId: string;
  let key: string;
  let session: string;

  before(async () => {
    const logger = createLogger('debug', {
      write(s: string) {
        lines.push(s);
      },
    });
    t = await startTestGateway({ logLevel: 'debug' }, { logger });
    const k = await t.startKernel();
    kernelId = k.id;
    const conn = t.gw.kernels.get(kernelId).connection;
    if (!conn) throw new Error('the kernel has no connection info');
    key = conn.key;
    // The token only in the URL, as browsers send it.
    const client = await TestClient.connect(
      `${t.wsBase}/api/kernels/${kernelId}/channels?token=${t.token}`,
    );
    session = client.session;
    const r = await client.execute("print('logged')");
    expect(r.reply.content.status).to.equal('ok');
    const missing = await t.api('/api/kernels/00000000-0000-4000-8000-000000000000');
    expect(missing.status).to.equal(404);
    // Careless lines: secrets inside objects are redacted by path.
    t.gw.kernels.get(kernelId).log('info', 'careless connection line', { connection: conn });
    t.gw.logger.info({ config: t.gw.config }, 'careless config line');
    const closed = client.closed;
    expect((await t.api(`/api/kernels/${kernelId}`, { method: 'DELETE' })).status).to.equal(204);
    await closed;
    await t.close();
  });

  function records(): Record<string, unknown>[] {
    return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  it('writes one JSON object per line', () => {
    expect(lines.length).to.be.above(5);
    for (const l of lines) {
      expect(l.endsWith('\n'), 'newline-terminated').to.equal(true);
      expect(l.trimEnd()).to.not.include('\n');
      expect(() => JSON.parse(l) as unknown, l).to.not.throw();
    }
  });

  it('names the kernel on every line about one, and the client session where there is one', () => {
    const recs = records();
    const msgs = recs.map((r) => r.msg);
    for (const m of [
      'starting a kernel',
      'kernel ready',
      'channels connected',
      'execute_request',
      'execute_reply',
      `Kernel does not exist: 00000000-0000-4000-8000-000000000000`,
      'kernel shut down',
      'channels disconnected',
    ])
      expect(msgs, m).to.include(m);
    for (const r of recs) {
      if (GATEWAY_WIDE.has(String(r.msg))) continue;
      expect(r, `kernel on "${String(r.msg)}"`).to.have.property('kernel');
    }
    for (const m of [
      'channels connected',
      'execute_request',
      'execute_reply',
      'channels disconnected',
    ]) {
      const r = recs.find((x) => x.msg === m);
      expect(r?.kernel, m).to.equal(kernelId);
      expect(r?.session, m).to.equal(session);
    }
    const exec = recs.find((x) => x.msg === 'execute_reply');
    expect(exec?.status).to.equal('ok');
    expect(exec?.duration_ms).to.be.a('number');
  });

  it('never logs the auth token or the kernel key', () => {
    const all = lines.join('');
    expect(all).to.include('careless connection line');
    expect(all).to.include('[redacted]');
    expect(all.includes(t.token), 'the auth token appears in the log').to.equal(false);
    expect(all.includes(key), 'the kernel HMAC key appears in the log').to.equal(false);
    const connected = records().find((x) => x.msg === 'channels connected');
    expect(connected?.url).to.be.a('string').and.include('token=[redacted]');
  });
});
