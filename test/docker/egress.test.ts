/**
 * Egress through the gateway's proxy, from inside real kernels: a PEP 503 mirror served by this
 * test on loopback (a pure-Python wheel and a compiled one, built here with Debian's python3 and
 * gcc), allow-listed by exact address:port; the same mirror on a second port that is not; the
 * addresses that must never be reached; the byte budget; deleting a kernel mid-download; and a
 * gateway with an empty allow-list, where nothing passes and no relay listens.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { createLogger } from '../../gateway/base/logger.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { KernelProbe, pyData } from '../helpers/kernel-probe.js';
import { runPythonJson } from '../helpers/python.js';
import { waitUntil } from '../helpers/wait.js';
import { stdout } from '../helpers/ws-client.js';

const skip = process.env.AIDO_SKIP_DOCKER === '1';
const MiB = 1024 * 1024;
/** Small enough to hit in a test, far above what the two installs move. */
const BUDGET = 8 * MiB;

/** Builds the two wheels with Debian's python3 (3.11, as in the kernel image) and gcc. */
const BUILD_WHEELS = String.raw`
import base64, hashlib, json, os, subprocess, sys, sysconfig, tempfile, zipfile
out = json.load(sys.stdin)['dir']

def record(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
    return f'{name},sha256={digest},{len(data)}'

def wheel(dist, version, tag, files, purelib):
    info = f'{dist}-{version}.dist-info'
    files = dict(files)
    files[f'{info}/METADATA'] = f'Metadata-Version: 2.1\nName: {dist.replace("_", "-")}\nVersion: {version}\n'.encode()
    files[f'{info}/WHEEL'] = f'Wheel-Version: 1.0\nGenerator: aido-egress-test\nRoot-Is-Purelib: {str(purelib).lower()}\nTag: {tag}\n'.encode()
    lines = [record(n, d) for n, d in files.items()] + [f'{info}/RECORD,,']
    files[f'{info}/RECORD'] = ('\n'.join(lines) + '\n').encode()
    name = f'{dist}-{version}-{tag}.whl'
    with zipfile.ZipFile(os.path.join(out, name), 'w', zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return name

pure = wheel('aido_pure', '1.0', 'py3-none-any', {'aido_pure/__init__.py': b'VALUE = "pure-ok"\n'}, True)

C = b'''
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "a + b in C"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "aido_compiled", NULL, -1, methods};
PyMODINIT_FUNC PyInit_aido_compiled(void) { return PyModule_Create(&mod); }
'''
with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, 'aido_compiled.c')
    so = os.path.join(tmp, 'aido_compiled' + sysconfig.get_config_var('EXT_SUFFIX'))
    with open(src, 'wb') as f:
        f.write(C)
    subprocess.run(['gcc', '-shared', '-fPIC', '-O2', '-I', sysconfig.get_paths()['include'], '-o', so, src], check=True)
    with open(so, 'rb') as f:
        so_bytes = f.read()
plat = sysconfig.get_platform().replace('-', '_').replace('.', '_')
py = f'cp{sys.version_info.major}{sys.version_info.minor}'
compiled = wheel('aido_compiled', '1.0', f'{py}-{py}-{plat}', {os.path.basename(so): so_bytes}, False)
json.dump({'pure': pure, 'compiled': compiled, 'python': sys.version.split()[0]}, sys.stdout)
`;

interface Mirror {
  ports: [number, number];
  /** Requests for /slow now streaming, and when each was closed (ms since epoch). */
  slow: { open: number; closedAt: number[] };
  close(): void;
}

/** A PEP 503 simple index over the wheels in `dir`, on two loopback ports. */
async function startMirror(dir: string): Promise<Mirror> {
  const files = new Map<string, Buffer>();
  for (const f of readdirSync(dir)) files.set(f, readFileSync(path.join(dir, f)));
  const project = (f: string): string => (f.split('-')[0] ?? '').replace(/_/g, '-');
  const slow = { open: 0, closedAt: [] as number[] };
  const handler: http.RequestListener = (req, res) => {
    const url = req.url ?? '/';
    const html = (body: string): void => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!DOCTYPE html><html><body>${body}</body></html>`);
    };
    if (url === '/simple/') {
      html(
        [...new Set([...files.keys()].map(project))]
          .map((p) => `<a href="/simple/${p}/">${p}</a>`)
          .join('\n'),
      );
    } else if (url.startsWith('/simple/')) {
      const p = url.slice('/simple/'.length).replace(/\/$/, '');
      const links = [...files.entries()]
        .filter(([f]) => project(f) === p)
        .map(
          ([f, b]) =>
            `<a href="/files/${f}#sha256=${createHash('sha256').update(b).digest('hex')}">${f}</a>`,
        );
      if (links.length === 0) {
        res.writeHead(404).end();
        return;
      }
      html(links.join('\n'));
    } else if (url.startsWith('/files/') && files.has(url.slice('/files/'.length))) {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.end(files.get(url.slice('/files/'.length)));
    } else if (url === '/big') {
      // 4 × the budget, with backpressure.
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      let left = (4 * BUDGET) / chunk.length;
      const more = (): void => {
        while (left-- > 0) if (!res.write(chunk)) return void res.once('drain', more);
        res.end();
      };
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': 4 * BUDGET,
      });
      more();
    } else if (url === '/slow') {
      slow.open++;
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const timer = setInterval(() => res.write(Buffer.alloc(1024, 0x73)), 100);
      res.on('close', () => {
        clearInterval(timer);
        slow.closedAt.push(Date.now());
      });
    } else res.writeHead(404).end();
  };
  const servers = [http.createServer(handler), http.createServer(handler)];
  const ports = await Promise.all(
    servers.map(
      (s) =>
        new Promise<number>((resolve) => {
          s.listen(0, '127.0.0.1', () => {
            resolve((s.address() as AddressInfo).port);
          });
        }),
    ),
  );
  return {
    ports: [ports[0] ?? 0, ports[1] ?? 0],
    slow,
    close() {
      for (const s of servers) {
        s.closeAllConnections();
        s.close();
      }
    },
  };
}

describe('egress: pip through the gateway proxy, from real kernels', function () {
  this.timeout(180_000);
  let wheelDir: string;
  let wheels: { pure: string; compiled: string; python: string };
  let mirror: Mirror;
  let t: TestGateway;
  let started = false;
  const lines: Record<string, unknown>[] = [];
  let allowed: number;
  let unlisted: number;

  before(async function () {
    if (skip) this.skip();
    wheelDir = mkdtempSync(path.join(tmpdir(), 'aido-wheels-'));
    wheels = (await runPythonJson('build the test wheels', BUILD_WHEELS, {
      dir: wheelDir,
    })) as typeof wheels;
    // The compiled wheel is tagged for the host's Python: the image's is Debian bookworm's 3.11.
    expect(wheels.python, 'host python3 (must match the kernel image)').to.match(/^3\.11\./);
    expect(wheels.compiled).to.match(/^aido_compiled-1\.0-cp311-cp311-linux_/);
    mirror = await startMirror(wheelDir);
    [allowed, unlisted] = mirror.ports;
    const logger = createLogger('info', {
      write(s: string) {
        lines.push(JSON.parse(s) as Record<string, unknown>);
      },
    });
    t = await startTestGateway(
      {
        // The mirror by exact address:port, and a listed name that resolves to loopback.
        egressAllow: [`127.0.0.1:${allowed}`, `localhost:${unlisted}`],
        egressBytes: BUDGET,
        // pip at 0.5 CPU on a busy machine: give a cell more than the default 30 s.
        execTimeoutS: 150,
        // One warm sandbox: its spec is made before any kernel exists, its proxy when it is taken.
        poolSize: 1,
        logLevel: 'info',
      },
      { logger },
    );
    started = true;
  });
  after(async () => {
    if (started) await t.close();
    mirror.close();
    rmSync(wheelDir, { recursive: true, force: true });
  });

  async function kernel(): Promise<KernelProbe> {
    const k = await t.startKernel();
    return KernelProbe.open(t, k.id);
  }

  it('%pip install of a pure and a compiled wheel from the allow-listed mirror, then import without a restart', async () => {
    const k = await kernel();
    try {
      const r = await k.run(
        '%pip install',
        `%pip install --index-url http://127.0.0.1:${allowed}/simple/ aido-pure aido-compiled`,
        150_000,
      );
      const out = stdout(r);
      expect(out, out).to.match(/Successfully installed aido-compiled-1\.0 aido-pure-1\.0/);
      const got = await k.json<{ pure: string; add: number; file: string; site: string }>(
        'import both',
        `
import aido_pure, aido_compiled, site
_aido_emit({'pure': aido_pure.VALUE, 'add': aido_compiled.add(40, 2), 'file': aido_compiled.__file__,
            'site': site.getusersitepackages()})
`,
      );
      expect(got.pure).to.equal('pure-ok');
      expect(got.add).to.equal(42);
      expect(got.file).to.match(
        /^\/pkgs\/lib\/python3\.11\/site-packages\/aido_compiled\.cpython-311-.*\.so$/,
      );
      const log = lines.filter((l) => l.msg === 'egress' && l.kernel === k.kernelId);
      expect(log.length, 'allowed connections logged').to.be.at.least(3);
      expect(log[0]).to.include({
        method: 'GET',
        target: `127.0.0.1:${allowed}`,
        address: '127.0.0.1',
        allowed: true,
      });
      expect(log.some((l) => typeof l.bytes_down === 'number' && l.bytes_down > 1000)).to.equal(
        true,
      );
      const containers = (await (await t.api('/api/security/containers')).json()) as {
        kernel_id: string;
        egress: { bytes_down: number; connections_allowed: number } | null;
      }[];
      const mine = containers.find((c) => c.kernel_id === k.kernelId);
      expect(mine?.egress?.bytes_down).to.be.above(1000);
      expect(mine?.egress?.connections_allowed).to.be.at.least(3);
    } finally {
      k.close();
    }
  });

  it('the same mirror on a port that is not listed: refused, and pip shows the policy (HTTPS and plain HTTP)', async () => {
    const k = await kernel();
    try {
      const https = stdout(
        await k.run(
          'pip over CONNECT',
          `%pip install --retries 1 --timeout 10 --index-url https://127.0.0.1:${unlisted}/simple/ aido-pure`,
          150_000,
        ),
      );
      expect(https).to.include(
        `Tunnel connection failed: 403 egress to 127.0.0.1:${unlisted} is not allowed by the gateway's policy`,
      );
      expect(https).not.to.match(/Successfully installed/);
      const plain = stdout(
        await k.run(
          'pip over plain HTTP',
          `%pip install -vv --retries 1 --index-url http://127.0.0.1:${unlisted}/simple/ aido-pure`,
          150_000,
        ),
      );
      expect(plain).to.include(
        `403 Client Error: egress to 127.0.0.1:${unlisted} is not allowed by the gateway's policy`,
      );
      expect(plain).not.to.match(/Successfully installed/);
      const denied = lines.filter((l) => l.msg === 'egress refused' && l.kernel === k.kernelId);
      expect(denied.map((l) => l.method)).to.include.members(['CONNECT', 'GET']);
      expect(denied[0]).to.include({
        target: `127.0.0.1:${unlisted}`,
        allowed: false,
        status: 403,
      });
    } finally {
      k.close();
    }
  });

  it("refuses the gateway's own port, 127.0.0.1:2375, the docker socket as a host, and names that resolve to loopback", async () => {
    const k = await kernel();
    try {
      const r = await k.json<Record<string, string>>(
        'refused targets',
        `
import socket
def _raw(request_line):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=20)
    s.sendall(request_line.encode() + b'\\r\\nHost: x\\r\\n\\r\\n')
    data = b''
    while b'\\r\\n' not in data:
        more = s.recv(4096)
        if not more:
            break
        data += more
    s.close()
    return data.split(b'\\r\\n')[0].decode('latin-1')
def _probe(targets):
    return {name: _raw(line) for name, line in targets.items()}
_aido_emit(_probe(${pyData({
          gateway: `GET http://127.0.0.1:${t.port}/api HTTP/1.1`,
          gatewayConnect: `CONNECT 127.0.0.1:${t.port} HTTP/1.1`,
          docker: 'GET http://127.0.0.1:2375/containers/json HTTP/1.1',
          dockerSocket: 'GET http://%2Fvar%2Frun%2Fdocker.sock/containers/json HTTP/1.1',
          dockerUnix: 'GET unix:///var/run/docker.sock/containers/json HTTP/1.1',
          listedName: `GET http://localhost:${unlisted}/simple/ HTTP/1.1`,
          unlistedName: `GET http://localhost:${allowed}/simple/ HTTP/1.1`,
          metadata: 'GET http://169.254.169.254/latest/meta-data/ HTTP/1.1',
        })}))
`,
      );
      const policy = "is not allowed by the gateway's policy";
      expect(r.gateway).to.equal(
        `HTTP/1.1 403 egress to 127.0.0.1:${t.port} ${policy}: it is not in the allow-list`,
      );
      expect(r.gatewayConnect)
        .to.match(/^HTTP\/1\.1 403 /)
        .and.include(policy);
      expect(r.docker).to.equal(
        `HTTP/1.1 403 egress to 127.0.0.1:2375 ${policy}: it is not in the allow-list`,
      );
      expect(r.dockerSocket)
        .to.match(/^HTTP\/1\.1 403 /)
        .and.include(policy);
      expect(r.dockerUnix)
        .to.match(/^HTTP\/1\.1 403 /)
        .and.include('only http:// is forwarded');
      expect(r.listedName).to.equal(
        `HTTP/1.1 403 egress to localhost:${unlisted} ${policy}: it resolves to 127.0.0.1, a loopback address (only an entry naming that exact address:port allows it)`,
      );
      expect(r.unlistedName)
        .to.match(/^HTTP\/1\.1 403 /)
        .and.include(policy);
      expect(r.metadata)
        .to.match(/^HTTP\/1\.1 403 /)
        .and.include(policy);
    } finally {
      k.close();
    }
  });

  it('the sandbox still has no network: only the relay answers on loopback, and DNS leads nowhere', async () => {
    const k = await kernel();
    try {
      const r = await k.json<{
        relay: string;
        mirror: string;
        gateway: string;
        dns: string;
        nameservers: string[];
        interfaces: string[];
      }>(
        'network view with egress on',
        `
import errno, os, socket
def _connect(port):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(('127.0.0.1', port))
        return 'connected'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
def _probe(ports):
    r = {'relay': _connect(3128), 'mirror': _connect(ports[0]), 'gateway': _connect(ports[1])}
    try:
        socket.getaddrinfo('pypi.org', 443)
        r['dns'] = 'resolved'
    except socket.gaierror as e:
        r['dns'] = 'failed'
    with open('/etc/resolv.conf') as f:
        r['nameservers'] = [l.split()[1] for l in f if l.startswith('nameserver')]
    r['interfaces'] = sorted(os.listdir('/sys/class/net'))
    return r
_aido_emit(_probe(${pyData([allowed, t.port])}))
`,
      );
      expect(r.relay).to.equal('connected');
      expect(r.mirror, 'the mirror port of the host, directly').to.equal('ECONNREFUSED');
      expect(r.gateway, "the gateway's port, directly").to.equal('ECONNREFUSED');
      expect(r.dns).to.equal('failed');
      expect(
        r.nameservers.filter((s) => s !== '127.0.0.1'),
        'nameservers besides 127.0.0.1',
      ).to.deep.equal([]);
      expect(r.interfaces).to.deep.equal(['lo']);
    } finally {
      k.close();
    }
  });

  it('the byte budget stops a download that exceeds it, and later requests are refused', async () => {
    const k = await kernel();
    try {
      const r = await k.json<{ got: number; length: number; after: string }>(
        'download past the budget',
        `
import urllib.request, urllib.error
def _probe(url):
    r = {'got': 0}
    try:
        with urllib.request.urlopen(url + '/big', timeout=60) as f:
            r['length'] = int(f.headers['Content-Length'])
            while True:
                block = f.read(65536)
                if not block:
                    break
                r['got'] += len(block)
    except OSError:
        pass
    try:
        urllib.request.urlopen(url + '/simple/', timeout=30)
        r['after'] = 'ok'
    except urllib.error.HTTPError as e:
        r['after'] = f'{e.code} {e.reason}'
    return r
_aido_emit(_probe(${pyData(`http://127.0.0.1:${allowed}`)}))
`,
        120_000,
      );
      expect(r.length, 'Content-Length the mirror sent').to.equal(4 * BUDGET);
      expect(r.got, 'bytes the kernel received: cut at the budget').to.be.at.most(BUDGET + MiB);
      expect(r.after).to.match(
        new RegExp(
          `^403 egress to 127.0.0.1:${allowed} is not allowed by the gateway's policy: this kernel's egress budget of ${BUDGET} bytes is used up`,
        ),
      );
    } finally {
      k.close();
    }
  });

  it('deleting a kernel mid-download closes its upstream connection before the DELETE returns', async () => {
    const k = await kernel();
    try {
      const before = mirror.slow.open;
      await k.run(
        'start a slow download in a thread',
        `
import threading, urllib.request
def _slow(url):
    try:
        with urllib.request.urlopen(url, timeout=120) as f:
            while f.read(1024):
                pass
    except Exception:
        pass
threading.Thread(target=_slow, args=(${pyData(`http://127.0.0.1:${allowed}/slow`)},), daemon=True).start()
`,
      );
      await waitUntil(
        () => mirror.slow.open > before,
        'the mirror to see the slow download',
        30_000,
      );
      const closedBefore = mirror.slow.closedAt.length;
      const res = await t.api(`/api/kernels/${k.kernelId}`, { method: 'DELETE' });
      const deleted = Date.now();
      expect(res.status).to.equal(204);
      expect(mirror.slow.closedAt.length, 'upstream closed by the time DELETE returned').to.equal(
        closedBefore + 1,
      );
      expect(mirror.slow.closedAt.at(-1)).to.be.at.most(deleted);
    } finally {
      k.close();
    }
  });

  it('a warm-pool sandbox gets its proxy when it is handed to a kernel', async () => {
    await waitUntil(() => t.gw.kernels.pool.ready >= 1, 'a ready warm-pool sandbox', 120_000);
    const pooled = t.gw.kernels.pool.sandboxIds();
    const k = await kernel();
    try {
      expect(
        pooled.has(t.gw.kernels.get(k.kernelId).sandboxId ?? ''),
        'the kernel got the pooled sandbox',
      ).to.equal(true);
      const r = await k.json<{ status: number; body: string }>(
        'GET through the proxy from a pooled sandbox',
        `
import urllib.request
def _probe(url):
    with urllib.request.urlopen(url, timeout=30) as f:
        return {'status': f.status, 'body': f.read().decode()}
_aido_emit(_probe(${pyData(`http://127.0.0.1:${allowed}/simple/`)}))
`,
      );
      expect(r.status).to.equal(200);
      expect(r.body).to.include('aido-pure');
    } finally {
      k.close();
    }
  });

  it('health lists the allow-list; metrics count allowed and denied connections and bytes', async () => {
    const health = (await (await t.api('/api/security/health')).json()) as {
      controls: {
        network: string;
        egress: { enabled: boolean; allow: string[]; budget_bytes: number };
      };
    };
    expect(health.controls.network).to.equal('none');
    expect(health.controls.egress).to.include({ enabled: true, budget_bytes: BUDGET });
    expect(health.controls.egress.allow).to.deep.equal([
      `127.0.0.1:${allowed} (https, http)`,
      `localhost:${unlisted} (https, http)`,
    ]);
    const metrics = await (await t.api('/metrics')).text();
    const value = (re: RegExp): number => Number(re.exec(metrics)?.[1] ?? NaN);
    expect(value(/^aido_egress_connections_total\{verdict="allowed"\} (\d+)/m)).to.be.at.least(3);
    expect(value(/^aido_egress_connections_total\{verdict="denied"\} (\d+)/m)).to.be.at.least(5);
    expect(value(/^aido_egress_bytes_total\{direction="down"\} (\d+)/m)).to.be.above(BUDGET);
  });
});

describe('egress off (AIDO_EGRESS_ALLOW empty): nothing passes, no relay listens', function () {
  this.timeout(180_000);
  let t: TestGateway;
  let started = false;

  before(async function () {
    if (skip) this.skip();
    t = await startTestGateway({ egressAllow: [] });
    started = true;
  });
  after(async () => {
    if (started) await t.close();
  });

  it('no relay, no proxy settings, no socket, no /pkgs; pip cannot reach anything', async () => {
    const k = await KernelProbe.open(t, (await t.startKernel()).id);
    try {
      const r = await k.json<{ relay: string; env: string[]; runKernel: string[]; pkgs: boolean }>(
        'egress off',
        `
import errno, os, socket
def _probe():
    s = socket.socket()
    try:
        s.connect(('127.0.0.1', 3128))
        relay = 'connected'
    except OSError as e:
        relay = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
    with open('/proc/mounts') as f:
        mounts = [l.split()[1] for l in f]
    return {'relay': relay, 'env': sorted(k for k in os.environ if 'PROXY' in k.upper() or k.startswith('PIP_')),
            'runKernel': sorted(os.listdir('/run/kernel')), 'pkgs': '/pkgs' in mounts}
_aido_emit(_probe())
`,
      );
      expect(r.relay).to.equal('ECONNREFUSED');
      expect(r.env).to.deep.equal([]);
      expect(r.runKernel).not.to.include('egress.sock');
      expect(r.pkgs).to.equal(false);
      const pip = stdout(
        await k.run(
          'pip with egress off',
          '%pip install --retries 0 --timeout 5 aido-pure',
          120_000,
        ),
      );
      expect(pip).not.to.match(/Successfully installed/);
      const health = (await (await t.api('/api/security/health')).json()) as {
        controls: { egress: { enabled: boolean; allow: string[] } };
      };
      expect(health.controls.egress).to.deep.equal({ enabled: false, allow: [] });
    } finally {
      k.close();
    }
  });
});
