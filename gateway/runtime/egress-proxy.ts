/**
 * The egress proxy: one listener per kernel on a unix socket in that kernel's directory (the relay
 * inside the sandbox forwards 127.0.0.1:3128 to it). It speaks the HTTP proxy protocol: CONNECT
 * tunnels (HTTPS) and plain-HTTP requests in absolute form. Every target passes the allow-list
 * (`security/egress-policy.ts`) twice: the name as written, then the address the gateway resolved
 * it to, which is the only address dialled (no second lookup, so no DNS rebinding). Bodies stream
 * with backpressure and are never buffered whole; a kernel has a byte budget, a cap on concurrent
 * connections, and connect and idle timeouts. Closing a kernel's egress destroys its connections.
 *
 * Longer than 400 lines because one kernel's proxy is one piece of state (its byte budget, open
 * connections, timeouts and teardown) that CONNECT tunnels and plain-HTTP requests both spend;
 * the policy itself is pure and lives in security/egress-policy.ts.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { constants as fsConstants } from 'node:fs';
import { chmod, chown, open, unlink } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { EgressMetricsSink } from '../base/metrics.js';
import {
  checkAddress,
  checkTarget,
  describeEgressPolicy,
  isTarget,
  parseConnectTarget,
  parseHttpTarget,
  type EgressPolicy,
  type EgressTarget,
  type HostFacts,
} from '../../security/egress-policy.js';
import { EGRESS_SOCKET_NAME } from '../../security/policy.js';
import type { Logger } from '../base/logger.js';
import type { Sandbox } from './runtime.js';

/** Limits of one kernel's egress. */
export interface EgressLimits {
  /** Bytes (both directions, bodies and tunnel payload) over the kernel's life. */
  bytes: number;
  /** Concurrent connections from the sandbox to the proxy. */
  maxConnections: number;
  /** Name lookup plus upstream connect, in ms. */
  connectTimeoutMs: number;
  /** A connection that carries no byte for this long is closed, in ms. */
  idleTimeoutMs: number;
}

/** One kernel's egress as the security API shows it. */
export interface EgressStats {
  bytes_up: number;
  bytes_down: number;
  budget_bytes: number;
  connections_allowed: number;
  connections_denied: number;
  connections_open: number;
}

/** Resolves a name to addresses (injected by unit tests). */
export type Lookup = (host: string) => Promise<string[]>;

export interface EgressProxiesOptions {
  policy: EgressPolicy;
  limits: EgressLimits;
  logger: Logger;
  metrics?: EgressMetricsSink;
  /** The gateway's own listening address (its ip), refused like the host's other addresses. */
  gatewayIp: string;
  lookup?: Lookup;
}

/** What a kernel session needs of its egress (absent: egress is off). */
export interface KernelEgressHandle {
  /** Starts the proxy for a (new) sandbox of this kernel; never throws (failure: no egress). */
  open(sandbox: Sandbox): Promise<void>;
  /** Closes the listener and destroys every connection at once; the kernel may open again. */
  stop(): void;
  /** The kernel is gone: {@link stop} for good. Idempotent. */
  close(): void;
}

/** Linux's O_PATH: a handle on the file itself (a socket cannot be opened otherwise). */
const O_PATH = 0o10000000;
/** Request headers a proxy must not forward (RFC 9110 §7.6.1) plus its own. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

const defaultLookup: Lookup = async (host) =>
  (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** Every address of this host's interfaces, plus the gateway's listening address. */
function hostFacts(gatewayIp: string): HostFacts {
  const local = new Set<string>();
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? [])
      if (ipaddr.isValid(a.address)) local.add(ipaddr.process(a.address).toString());
  if (ipaddr.isValid(gatewayIp)) local.add(ipaddr.process(gatewayIp).toString());
  return { localAddresses: local };
}

/** A refusal or failure before any byte went upstream. */
class Refusal {
  constructor(
    readonly status: 403 | 429 | 502 | 504,
    readonly reason: string,
  ) {}
}

/** Writes a status line and a short text body on a raw socket, then closes it. */
function answerRaw(socket: net.Socket, status: number, reason: string): void {
  if (socket.destroyed) return;
  const body = `${reason}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** The per-gateway registry of kernel egress proxies. */
export class EgressProxies {
  readonly #kernels = new Map<string, KernelEgress>();

  constructor(readonly opts: EgressProxiesOptions) {}

  /** The allow-list in words (health). */
  describe(): string[] {
    return describeEgressPolicy(this.opts.policy);
  }

  /**
   * The egress of kernel `id` (its budget lasts across the kernel's restarts). It is listed (for
   * stats and closeAll) while a sandbox of the kernel has its proxy open.
   */
  forKernel(id: string): KernelEgressHandle {
    return new KernelEgress(id, this.opts, (k, live) => {
      if (live) this.#kernels.set(id, k);
      else if (this.#kernels.get(id) === k) this.#kernels.delete(id);
    });
  }

  /** What kernel `id` moved so far; undefined when it has no egress. */
  stats(id: string): EgressStats | undefined {
    return this.#kernels.get(id)?.stats();
  }

  /** Closes every kernel's egress (gateway shutdown). */
  closeAll(): void {
    for (const k of [...this.#kernels.values()]) k.close();
  }
}

class KernelEgress implements KernelEgressHandle {
  #up = 0;
  #down = 0;
  #allowed = 0;
  #denied = 0;
  #exhausted = false;
  #server: net.Server | undefined;
  readonly #http: http.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #log: Logger;

  constructor(
    readonly kernelId: string,
    private readonly opts: EgressProxiesOptions,
    private readonly listed: (k: KernelEgress, live: boolean) => void,
  ) {
    this.#log = opts.logger.child({ kernel: kernelId, component: 'egress' });
    this.#http = http.createServer({
      maxHeaderSize: 16 * 1024,
      headersTimeout: opts.limits.idleTimeoutMs,
      // Whole-request time limits would cut long uploads; the idle timeout bounds stalls.
      requestTimeout: 0,
      keepAliveTimeout: opts.limits.idleTimeoutMs,
    });
    this.#http.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      void this.#tunnel(req, socket, head);
    });
    this.#http.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      void this.#forward(req, res);
    });
    this.#http.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      this.#finish(req.method ?? 'UPGRADE', req.url ?? '', null, 0, 0, Date.now(), {
        status: 403,
        reason: 'protocol upgrades are not proxied',
      });
      answerRaw(socket, 403, 'protocol upgrades are not proxied by the gateway');
    });
    this.#http.on('clientError', (_err, socket: net.Socket) => {
      answerRaw(socket, 400, 'not an HTTP proxy request');
    });
  }

  stats(): EgressStats {
    return {
      bytes_up: this.#up,
      bytes_down: this.#down,
      budget_bytes: this.opts.limits.bytes,
      connections_allowed: this.#allowed,
      connections_denied: this.#denied,
      connections_open: this.#sockets.size,
    };
  }

  async open(sandbox: Sandbox): Promise<void> {
    this.stop();
    const path = sandbox.hostPath(EGRESS_SOCKET_NAME);
    if (path === null) {
      this.#log.warn('the runtime gives no local path for the egress socket: no egress');
      return;
    }
    const server = net.createServer((socket) => {
      this.#accept(socket);
    });
    this.#server = server;
    this.listed(this, true);
    try {
      // An adopted sandbox's socket from its previous gateway (root's: the kernel could not replace
      // it), or whatever the kernel put there if that gateway had no egress. unlink never follows a
      // symlink, and bind(2) refuses a name the kernel creates in between.
      await unlink(path).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => {
        this.#log.warn({ err: String(err) }, 'egress listener failed');
      });
      await handOver(path, sandbox.uid);
      this.#log.debug({ socket: path }, 'egress proxy listening');
    } catch (err) {
      if (this.#server === server) this.stop();
      this.#log.error(
        { err: String(err), socket: path },
        'egress proxy could not start: no egress',
      );
    }
  }

  stop(): void {
    const server = this.#server;
    this.#server = undefined;
    server?.close();
    for (const s of this.#sockets) s.destroy();
    this.listed(this, false);
  }

  close(): void {
    this.stop();
  }

  #accept(socket: net.Socket): void {
    if (this.#sockets.size >= this.opts.limits.maxConnections) {
      const reason = `egress connection limit reached (${this.opts.limits.maxConnections} per kernel, AIDO_EGRESS_CONNECTIONS)`;
      this.#finish('-', '-', null, 0, 0, Date.now(), { status: 429, reason });
      answerRaw(socket, 429, reason);
      return;
    }
    this.#sockets.add(socket);
    this.opts.metrics?.egressOpen(1);
    socket.setTimeout(this.opts.limits.idleTimeoutMs);
    socket.on('timeout', () => socket.destroy());
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      this.opts.metrics?.egressOpen(-1);
    });
    this.#http.emit('connection', socket);
  }

  /** Counts bytes; false (and every connection of the kernel closed) past the budget. */
  #count(direction: 'up' | 'down', n: number): boolean {
    if (direction === 'up') this.#up += n;
    else this.#down += n;
    this.opts.metrics?.egressBytes(direction, n);
    if (this.#up + this.#down <= this.opts.limits.bytes) return true;
    if (!this.#exhausted) {
      this.#exhausted = true;
      this.#log.warn(
        { budget_bytes: this.opts.limits.bytes, bytes_up: this.#up, bytes_down: this.#down },
        'egress byte budget used up: closing every egress connection of the kernel',
      );
    }
    for (const s of this.#sockets) s.destroy();
    return false;
  }

  /** Checks the target, resolves it, checks the address, connects; a socket or a refusal. */
  async #dial(target: EgressTarget): Promise<{ socket: net.Socket; address: string } | Refusal> {
    if (this.#exhausted) {
      return new Refusal(
        403,
        `egress to ${target.host}:${target.port} is not allowed by the gateway's policy: this kernel's egress budget of ${this.opts.limits.bytes} bytes is used up`,
      );
    }
    const named = checkTarget(this.opts.policy, target);
    if (!named.allowed) return new Refusal(403, named.reason);
    const deadline = Date.now() + this.opts.limits.connectTimeoutMs;
    let addresses: string[];
    if (target.literal) addresses = [target.host];
    else {
      try {
        addresses = await withTimeout(
          (this.opts.lookup ?? defaultLookup)(target.host),
          deadline - Date.now(),
        );
      } catch (err) {
        return new Refusal(
          err instanceof TimeoutError ? 504 : 502,
          `cannot resolve ${target.host}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        );
      }
    }
    const facts = hostFacts(this.opts.gatewayIp);
    const usable: string[] = [];
    let firstRefusal: string | undefined;
    for (const a of addresses) {
      const v = checkAddress(this.opts.policy, target, a, facts);
      if (v.allowed) usable.push(a);
      else firstRefusal ??= v.reason;
    }
    if (usable.length === 0) return new Refusal(403, firstRefusal ?? `${target.host}: no address`);
    let lastErr = 'no address';
    for (const address of usable) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        return { socket: await connect(address, target.port, left), address };
      } catch (err) {
        lastErr = (err as NodeJS.ErrnoException).code ?? String(err);
        if (err instanceof TimeoutError)
          return new Refusal(504, `connecting to ${target.host}:${target.port} timed out`);
      }
    }
    return new Refusal(502, `cannot connect to ${target.host}:${target.port}: ${lastErr}`);
  }

  async #tunnel(req: http.IncomingMessage, client: net.Socket, head: Buffer): Promise<void> {
    const t0 = Date.now();
    const parsed = parseConnectTarget(req.url ?? '');
    if (!isTarget(parsed)) {
      this.#finish('CONNECT', req.url ?? '', null, 0, 0, t0, {
        status: 403,
        reason: parsed.allowed ? '' : parsed.reason,
      });
      answerRaw(client, 403, parsed.allowed ? '' : parsed.reason);
      return;
    }
    const got = await this.#dial(parsed);
    if (got instanceof Refusal) {
      this.#finish('CONNECT', `${parsed.host}:${parsed.port}`, null, 0, 0, t0, got);
      answerRaw(client, got.status, got.reason);
      return;
    }
    const up = got.socket;
    if (client.destroyed) {
      up.destroy();
      return;
    }
    this.#allowed++;
    this.opts.metrics?.egressConnection('allowed');
    let sent = 0;
    let received = 0;
    up.setTimeout(this.opts.limits.idleTimeoutMs);
    up.on('timeout', () => up.destroy());
    up.on('error', () => undefined);
    const done = (): void => {
      client.destroy();
      up.destroy();
    };
    up.once('close', () => {
      client.end();
      this.#finish(
        'CONNECT',
        `${parsed.host}:${parsed.port}`,
        got.address,
        sent,
        received,
        t0,
        null,
      );
    });
    client.once('close', done);
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) {
      sent += head.length;
      if (!this.#count('up', head.length)) return;
      up.write(head);
    }
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (this.#count('up', chunk.length)) {
        if (!up.write(chunk)) client.pause();
      } else done();
    });
    up.on('drain', () => client.resume());
    up.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (this.#count('down', chunk.length)) {
        if (!client.write(chunk)) up.pause();
      } else done();
    });
    client.on('drain', () => up.resume());
    client.on('end', () => up.end());
    up.on('end', () => client.end());
  }

  async #forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = Date.now();
    const method = req.method ?? 'GET';
    const parsed = parseHttpTarget(req.url ?? '');
    const refuse = (what: string, r: { status: number; reason: string }): void => {
      this.#finish(method, what, null, 0, 0, t0, r);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const body = `${r.reason}\n`;
      res.writeHead(r.status, r.reason, {
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        Connection: 'close',
      });
      res.end(body);
      req.resume();
    };
    if (!isTarget(parsed)) {
      refuse(req.url ?? '', { status: 403, reason: parsed.allowed ? '' : parsed.reason });
      return;
    }
    const what = `${parsed.host}:${parsed.port}`;
    const got = await this.#dial(parsed);
    if (got instanceof Refusal) {
      refuse(what, got);
      return;
    }
    // The kernel hung up during the lookup or connect: nothing would ever close this socket.
    if (req.socket.destroyed) {
      got.socket.destroy();
      return;
    }
    this.#allowed++;
    this.opts.metrics?.egressConnection('allowed');
    const url = new URL(req.url ?? '/');
    const headers: [string, string][] = [];
    const named = new Set(
      (req.headers.connection ?? '').split(',').map((s) => s.trim().toLowerCase()),
    );
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i] ?? '';
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
      headers.push([name, req.rawHeaders[i + 1] ?? '']);
    }
    // The Host the upstream sees is the one that was checked, not what the sandbox wrote.
    headers.push(['Host', url.host], ['Connection', 'close']);
    let sent = 0;
    let received = 0;
    const up = got.socket;
    up.setTimeout(this.opts.limits.idleTimeoutMs);
    up.on('timeout', () => up.destroy(new Error('idle timeout')));
    const upReq = http.request({
      method,
      path: `${url.pathname}${url.search}`,
      headers: headers.flat(),
      setHost: false,
      createConnection: () => up,
    });
    let finished = false;
    const finish = (error: string | null): void => {
      if (finished) return;
      finished = true;
      this.#finish(
        method,
        what,
        got.address,
        sent,
        received,
        t0,
        error === null ? null : { status: 502, reason: error },
      );
    };
    upReq.on('error', (err) => {
      if (!res.headersSent) {
        const body = `upstream ${what} failed: ${err.message}\n`;
        res.writeHead(502, 'Bad Gateway', {
          'Content-Type': 'text/plain',
          'Content-Length': Buffer.byteLength(body),
        });
        res.end(body);
      } else res.destroy();
      finish(err.message);
    });
    res.on('close', () => {
      if (!res.writableFinished) upReq.destroy();
      up.destroy();
      finish(null);
    });
    req.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (!this.#count('up', chunk.length)) upReq.destroy(new Error('egress byte budget used up'));
    });
    req.pipe(upReq);
    upReq.on('response', (upRes) => {
      const out: [string, string][] = [];
      for (let i = 0; i + 1 < upRes.rawHeaders.length; i += 2) {
        const name = upRes.rawHeaders[i] ?? '';
        const lower = name.toLowerCase();
        if (HOP_BY_HOP.has(lower)) continue;
        out.push([name, upRes.rawHeaders[i + 1] ?? '']);
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage ?? '', out.flat());
      upRes.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (!this.#count('down', chunk.length)) {
          upRes.destroy();
          res.destroy();
        }
      });
      upRes.pipe(res);
    });
  }

  /** One log line per connection or request, allowed or refused. */
  #finish(
    method: string,
    target: string,
    address: string | null,
    up: number,
    down: number,
    t0: number,
    refusal: { status: number; reason: string } | null,
  ): void {
    const fields = {
      method,
      target: target.length > 200 ? `${target.slice(0, 200)}...` : target,
      address,
      allowed: refusal === null,
      bytes_up: up,
      bytes_down: down,
      duration_ms: Date.now() - t0,
    };
    if (refusal === null) {
      this.#log.info(fields, 'egress');
      return;
    }
    // Refused before connecting: counted here (allowed ones were counted when they connected).
    if (address === null) {
      const denied = refusal.status === 403 || refusal.status === 429;
      if (denied) this.#denied++;
      this.opts.metrics?.egressConnection(denied ? 'denied' : 'failed');
    }
    this.#log.warn({ ...fields, status: refusal.status, reason: refusal.reason }, 'egress refused');
  }
}

class TimeoutError extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => {
        reject(new TimeoutError(`timed out after ${ms} ms`));
      },
      Math.max(0, ms),
    );
    p.then(resolve, reject).finally(() => {
      clearTimeout(timer);
    });
  });
}

function connect(address: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TimeoutError(`connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Makes the socket connectable by the sandbox's uid, without following a symlink the sandbox may
 * have put in its place: the file is opened with O_PATH|O_NOFOLLOW, must be a socket owned by the
 * gateway's user (one the sandbox made would be its own uid's), and is changed through its
 * /proc/self/fd link, which names that inode and nothing else. It stays root's, with the sandbox's
 * gid and mode 0660: the kernel connects through its group, and the sticky, root-owned kernel
 * directory keeps it from removing or replacing a file it does not own.
 */
async function handOver(path: string, sandboxUid: number | null): Promise<void> {
  const handle = await open(path, O_PATH | fsConstants.O_NOFOLLOW);
  try {
    const st = await handle.stat();
    const me = process.getuid?.() ?? 0;
    if (!st.isSocket() || st.uid !== me) throw new Error(`${path} is not the proxy's socket`);
    const self = `/proc/self/fd/${handle.fd}`;
    if (me === 0 && sandboxUid !== null) {
      await chown(self, 0, sandboxUid);
      await chmod(self, 0o660);
    } else {
      // Not root (a development run) or no known uid: only a world-writable socket is reachable.
      await chmod(self, 0o666);
    }
  } finally {
    await handle.close();
  }
}
