/**
 * The egress proxy on its own: a fake sandbox (just a directory for the socket), real upstream
 * servers on loopback, a real HTTP proxy client speaking over the unix socket.
 */
import { mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import {
  EgressProxies,
  type EgressLimits,
  type KernelEgressHandle,
} from '../../../gateway/runtime/egress-proxy.js';
import { createLogger } from '../../../gateway/base/logger.js';
import type { Sandbox } from '../../../gateway/runtime/runtime.js';
import { compileEgressPolicy } from '../../../security/egress-policy.js';
import { waitUntil } from '../../helpers/wait.js';

const MiB = 1024 * 1024;

function upstream(): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/big') {
      // 4 MiB in 64 KiB chunks, with backpressure.
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let left = 64;
      const more = (): void => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      more();
      return;
    }
    if (req.url === '/echo') {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Seen-Host': req.headers.host ?? '' });
      req.pipe(res);
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/plain',
      'X-Seen-Host': req.headers.host ?? '',
      'X-Seen-Proxy-Auth': req.headers['proxy-authorization'] ?? 'none',
    });
    res.end(`hello from ${req.url}`);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({ server, port: (server.address() as net.AddressInfo).port });
    });
  });
}

/** The sandbox's own uid (and gid), from the sandbox range. */
const SANDBOX_UID = 2_000_000_123;

function fakeSandbox(dir: string): Sandbox {
  return {
    uid: SANDBOX_UID,
    hostPath: (name: string) => path.join(dir, name),
  } as unknown as Sandbox;
}

interface Reply {
  status: number;
  reason: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A plain-HTTP proxy request over the unix socket. */
function viaProxy(
  sock: string,
  url: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: sock,
        path: url,
        method: init.method ?? 'GET',
        headers: { Host: new URL(url).host, ...init.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            reason: res.statusMessage ?? '',
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/** Opens a CONNECT tunnel over the unix socket; resolves with the status and the tunnel socket. */
function tunnel(
  sock: string,
  authority: string,
): Promise<{ status: number; reason: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: sock, method: 'CONNECT', path: authority });
    req.on('connect', (res, socket) => {
      resolve({ status: res.statusCode ?? 0, reason: res.statusMessage ?? '', socket });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends one HTTP/1.0 request through an open tunnel and reads until the upstream closes. */
function overTunnel(
  socket: net.Socket,
  host: string,
  p: string,
): Promise<{ text: string; closedEarly: boolean; bytes: number }> {
  return new Promise((resolve) => {
    let bytes = 0;
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => {
      bytes += c.length;
      if (chunks.length < 4) chunks.push(c);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ text, closedEarly: bytes < 4 * MiB, bytes });
    });
    socket.write(`GET ${p} HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
  });
}

describe('gateway/egress-proxy', function () {
  let up: { server: http.Server; port: number };
  let other: { server: http.Server; port: number };
  let dir: string;
  let lines: Record<string, unknown>[];

  before(async () => {
    up = await upstream();
    other = await upstream();
  });
  after(() => {
    up.server.close();
    other.server.close();
  });
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'aido-egress-'));
    lines = [];
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  async function proxy(
    allow: string[],
    limits: Partial<EgressLimits> = {},
  ): Promise<{ handle: KernelEgressHandle; proxies: EgressProxies; sock: string }> {
    const logger = createLogger('info', {
      write(s: string) {
        lines.push(JSON.parse(s) as Record<string, unknown>);
      },
    });
    const proxies = new EgressProxies({
      policy: compileEgressPolicy(allow),
      limits: {
        bytes: 64 * MiB,
        maxConnections: 8,
        connectTimeoutMs: 2000,
        idleTimeoutMs: 5000,
        ...limits,
      },
      logger,
      gatewayIp: '127.0.0.1',
      // "mirror.test" resolves to loopback: a listed name must not reach it.
      lookup: (host) => Promise.resolve(host === 'mirror.test' ? ['127.0.0.1'] : []),
    });
    const handle = proxies.forKernel('k-1');
    await handle.open(fakeSandbox(dir));
    return { handle, proxies, sock: path.join(dir, 'egress.sock') };
  }

  it('forwards plain HTTP to an exactly listed address:port, with the checked Host and no proxy credentials', async () => {
    const { handle, proxies, sock } = await proxy([`127.0.0.1:${up.port}`]);
    try {
      const r = await viaProxy(sock, `http://127.0.0.1:${up.port}/simple/`, {
        headers: { 'Proxy-Authorization': 'Basic c2VjcmV0', Host: 'other.example' },
      });
      expect(r.status).to.equal(200);
      expect(r.body).to.equal('hello from /simple/');
      expect(r.headers['x-seen-host']).to.equal(`127.0.0.1:${up.port}`);
      expect(r.headers['x-seen-proxy-auth']).to.equal('none');
      const echo = await viaProxy(sock, `http://127.0.0.1:${up.port}/echo`, {
        method: 'POST',
        body: 'x'.repeat(1000),
      });
      expect(echo.body).to.equal('x'.repeat(1000));
      expect(proxies.stats('k-1')).to.include({
        connections_allowed: 2,
        connections_denied: 0,
        bytes_up: 1000,
      });
      expect(proxies.stats('k-1')?.bytes_down).to.equal(1000 + 'hello from /simple/'.length);
      const line = lines.find((l) => l.msg === 'egress' && l.method === 'GET');
      expect(line).to.include({
        kernel: 'k-1',
        target: `127.0.0.1:${up.port}`,
        address: '127.0.0.1',
        allowed: true,
        bytes_down: 19,
      });
      expect(line?.duration_ms).to.be.a('number');
    } finally {
      handle.close();
    }
  });

  it('tunnels CONNECT to a listed address:port and refuses another port with the policy in the status line', async () => {
    const { handle, sock } = await proxy([`127.0.0.1:${up.port}`]);
    try {
      const t = await tunnel(sock, `127.0.0.1:${up.port}`);
      expect(t.status).to.equal(200);
      const got = await overTunnel(t.socket, `127.0.0.1:${up.port}`, '/simple/');
      expect(got.text).to.match(/^HTTP\/1\.1 200/);
      expect(got.text).to.include('hello from /simple/');

      const refused = await tunnel(sock, `127.0.0.1:${other.port}`);
      expect(refused.status).to.equal(403);
      expect(refused.reason).to.equal(
        `egress to 127.0.0.1:${other.port} is not allowed by the gateway's policy: it is not in the allow-list`,
      );
      refused.socket.destroy();
      const plain = await viaProxy(sock, `http://127.0.0.1:${other.port}/simple/`);
      expect(plain.status).to.equal(403);
      expect(plain.body).to.include("is not allowed by the gateway's policy");
      const denied = lines.filter((l) => l.msg === 'egress refused');
      expect(denied.map((l) => l.target)).to.deep.equal([
        `127.0.0.1:${other.port}`,
        `127.0.0.1:${other.port}`,
      ]);
      expect(denied[0]).to.include({
        kernel: 'k-1',
        allowed: false,
        status: 403,
        method: 'CONNECT',
      });
    } finally {
      handle.close();
    }
  });

  it('refuses a listed name that resolves to loopback, and origin-form, https:// and upgrade requests', async () => {
    const { handle, proxies, sock } = await proxy([`mirror.test:${up.port}`]);
    try {
      const r = await viaProxy(sock, `http://mirror.test:${up.port}/simple/`);
      expect(r.status).to.equal(403);
      expect(r.reason).to.match(/resolves to 127\.0\.0\.1, a loopback address/);
      expect((await viaProxy(sock, `http://localhost:${up.port}/`)).status).to.equal(403);
      const origin = await new Promise<number>((resolve, reject) => {
        http
          .get({ socketPath: sock, path: '/simple/' }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          })
          .on('error', reject);
      });
      expect(origin).to.equal(403);
      expect(
        (
          await viaProxy(sock, `http://mirror.test:${up.port}/`, {
            headers: { Connection: 'Upgrade', Upgrade: 'websocket' },
          })
        ).status,
      ).to.equal(403);
      const https = await viaProxy(sock, `https://mirror.test:${up.port}/`);
      expect(https.reason).to.match(/only http:\/\/ is forwarded/);
      expect(proxies.stats('k-1')?.connections_allowed).to.equal(0);
      expect(proxies.stats('k-1')?.connections_denied).to.equal(5);
    } finally {
      handle.close();
    }
  });

  it('stops a download at the byte budget, and refuses new connections after it', async () => {
    const { handle, proxies, sock } = await proxy([`127.0.0.1:${up.port}`], { bytes: 256 * 1024 });
    try {
      const t = await tunnel(sock, `127.0.0.1:${up.port}`);
      const got = await overTunnel(t.socket, `127.0.0.1:${up.port}`, '/big');
      expect(got.closedEarly, `received ${got.bytes} of 4 MiB`).to.equal(true);
      const stats = proxies.stats('k-1');
      expect((stats?.bytes_down ?? 0) + (stats?.bytes_up ?? 0)).to.be.above(256 * 1024);
      expect(stats?.bytes_down).to.be.below(256 * 1024 + 256 * 1024);
      const after = await viaProxy(sock, `http://127.0.0.1:${up.port}/simple/`);
      expect(after.status).to.equal(403);
      expect(after.reason).to.match(/egress budget of 262144 bytes is used up/);
      expect(
        lines.some(
          (l) =>
            l.msg === 'egress byte budget used up: closing every egress connection of the kernel',
        ),
      ).to.equal(true);
    } finally {
      handle.close();
    }
  });

  it('caps concurrent connections with a 429', async () => {
    const { handle, sock } = await proxy([`127.0.0.1:${up.port}`], { maxConnections: 2 });
    try {
      const a = await tunnel(sock, `127.0.0.1:${up.port}`);
      const b = await tunnel(sock, `127.0.0.1:${up.port}`);
      const c = await viaProxy(sock, `http://127.0.0.1:${up.port}/simple/`);
      expect(c.status).to.equal(429);
      expect(c.reason).to.match(/egress connection limit reached \(2 per kernel/);
      a.socket.destroy();
      b.socket.destroy();
    } finally {
      handle.close();
    }
  });

  it('closing the kernel destroys its open tunnels and removes the listener', async () => {
    const { handle, proxies, sock } = await proxy([`127.0.0.1:${up.port}`]);
    const t = await tunnel(sock, `127.0.0.1:${up.port}`);
    const closed = new Promise<void>((resolve) =>
      t.socket.once('close', () => {
        resolve();
      }),
    );
    await waitUntil(
      () => proxies.stats('k-1')?.connections_open === 1,
      'the tunnel to be counted',
      2000,
      10,
    );
    handle.close();
    await closed;
    expect(proxies.stats('k-1')).to.equal(undefined);
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(sock);
      s.once('connect', () => {
        reject(new Error('the listener still accepts'));
      });
      s.once('error', () => {
        resolve();
      });
    });
  });

  it('closes a tunnel that carries no bytes for the idle timeout', async () => {
    const { handle, sock } = await proxy([`127.0.0.1:${up.port}`], { idleTimeoutMs: 200 });
    try {
      const t = await tunnel(sock, `127.0.0.1:${up.port}`);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error('the idle tunnel was not closed within 5 s'));
        }, 5000);
        t.socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        t.socket.resume();
      });
    } finally {
      handle.close();
    }
  });

  it('keeps the socket root’s, reachable through the sandbox’s gid (0660), and never follows a symlink planted at its path', async () => {
    const victim = path.join(dir, 'victim');
    writeFileSync(victim, 'keep', { mode: 0o640 });
    symlinkSync(victim, path.join(dir, 'egress.sock'));
    const { handle, sock } = await proxy([`127.0.0.1:${up.port}`]);
    try {
      const st = statSync(sock);
      expect(st.isSocket(), 'a socket replaced the symlink').to.equal(true);
      if (process.getuid?.() === 0) {
        // Root's: in the sticky, root-owned kernel directory the kernel cannot remove or replace it.
        expect(st.uid).to.equal(0);
        expect(st.gid).to.equal(SANDBOX_UID);
        expect(st.mode & 0o777).to.equal(0o660);
      } else {
        expect(st.mode & 0o777).to.equal(0o666);
      }
      const v = statSync(victim);
      expect(v.mode & 0o777, 'the symlink target keeps its mode').to.equal(0o640);
      expect(readFileSync(victim, 'utf8')).to.equal('keep');
    } finally {
      handle.close();
    }
  });
});
