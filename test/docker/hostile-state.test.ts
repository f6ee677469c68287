/**
 * A hostile kernel against the gateway's state: everything here is done from inside a kernel
 * (real gateway as a child process, real sandboxes), and the gateway is SIGKILLed and restarted
 * where the attack needs it. Nothing a sandbox can write may decide which kernel a restarted
 * gateway adopts, with which key, or make root follow a link; the kernel directory is a capped,
 * noexec tmpfs; kernels run as a uid no host account has; one gateway per state dir.
 */
import { mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { kernelImage, startTestGateway } from '../helpers/gateway.js';
import {
  killGatewayProcess,
  runGatewayToExit,
  startGatewayProcess,
  stopGatewayProcess,
  type GatewayProcess,
} from '../helpers/gateway-process.js';
import { stdout, TestClient } from '../helpers/ws-client.js';

const TMPFS_MAGIC = 0x01021994;

describe('hostile kernel: nothing the sandbox can write is trusted (real gateway, real sandboxes)', function () {
  this.timeout(240_000);
  const docker = new Docker();
  const token = 'hostile-state-test-token';
  const auth = { Authorization: `token ${token}`, 'Content-Type': 'application/json' };
  let stateDir: string;
  let trapDir: string;
  let trap: Server;
  let trapConnections = 0;
  let env: Record<string, string>;
  let gw: GatewayProcess | undefined;
  const kernels: Record<'victim' | 'bystander' | 'junk' | 'hijacker', string> = {
    victim: '',
    bystander: '',
    junk: '',
    hijacker: '',
  };

  const labelled = (): Promise<Docker.ContainerInfo[]> =>
    docker.listContainers({
      all: true,
      filters: { label: [`org.aido.kernel-gateway.state-dir=${stateDir}`] },
    });
  const api = (p: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${gw?.base}${p}`, { ...init, headers: auth });
  async function run(kernelId: string, code: string): Promise<string> {
    const c = await TestClient.connect(
      `${gw?.base.replace('http', 'ws')}/api/kernels/${kernelId}/channels`,
      { token },
    );
    try {
      const r = await c.execute(code);
      expect(r.reply.content.status, `${code}\n→ ${JSON.stringify(r.reply.content)}`).to.equal(
        'ok',
      );
      return stdout(r);
    } finally {
      c.close();
    }
  }
  async function containerOf(kernelId: string): Promise<Docker.ContainerInspectInfo> {
    const res = await api('/api/security/containers');
    const list = (await res.json()) as { container_id?: string; kernel_id?: string | null }[];
    const entry = list.find((c) => c.kernel_id === kernelId);
    if (!entry?.container_id) throw new Error(`no container listed for kernel ${kernelId}`);
    return docker.getContainer(entry.container_id).inspect();
  }

  before(async () => {
    stateDir = mkdtempSync('/tmp/aido-h-');
    // A root-only host socket the attacker points its socket path at.
    trapDir = mkdtempSync('/tmp/aido-trap-');
    trap = createServer((s) => {
      trapConnections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => trap.listen(path.join(trapDir, 'trap.sock'), resolve));
    env = {
      AIDO_STATE_DIR: stateDir,
      AIDO_AUTH_TOKEN: token,
      AIDO_KERNEL_IMAGE: kernelImage(),
      AIDO_POOL_SIZE: '0',
    };
    gw = await startGatewayProcess(env);
    for (const name of Object.keys(kernels) as (keyof typeof kernels)[]) {
      const res = await api('/api/kernels', { method: 'POST', body: '{}' });
      expect(res.status, `starting the ${name} kernel`).to.equal(201);
      kernels[name] = ((await res.json()) as { id: string }).id;
    }
  });
  after(async () => {
    await stopGatewayProcess(gw);
    for (const c of await labelled())
      await docker.getContainer(c.Id).remove({ force: true, v: true });
    trap.close();
    rmSync(trapDir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('the kernel directory is a capped tmpfs: writing past the cap is ENOSPC, the host disk is untouched', async () => {
    const out = await run(
      kernels.bystander,
      [
        'import errno, os',
        'n = 0',
        'try:',
        "    with open('/run/kernel/fill', 'wb') as f:",
        '        for _ in range(64):',
        "            f.write(b'x' * (1 << 20)); f.flush(); n += 1",
        "    bytes_result = 'no error'",
        'except OSError as e:',
        '    bytes_result = errno.errorcode[e.errno]',
        "os.remove('/run/kernel/fill')",
        'made = []',
        'try:',
        '    for i in range(100000):',
        "        p = f'/run/kernel/f{i}'; open(p, 'w').close(); made.append(p)",
        "    inode_result = 'no error'",
        'except OSError as e:',
        '    inode_result = errno.errorcode[e.errno]',
        'for p in made: os.remove(p)',
        "mount = [l.split() for l in open('/proc/mounts') if l.split()[1] == '/run/kernel'][0]",
        "print(bytes_result, n, inode_result, len(made), mount[2], ','.join(sorted(mount[3].split(','))))",
      ].join('\n'),
    );
    const [bytesResult, mib, inodeResult, files, fsType, opts] = out.trim().split(' ');
    expect(bytesResult, `writing 64 MiB: ${out}`).to.equal('ENOSPC');
    expect(Number(mib), 'MiB written before ENOSPC').to.be.at.most(1);
    expect(inodeResult, `creating files: ${out}`).to.equal('ENOSPC');
    expect(Number(files), 'files created before ENOSPC').to.be.below(100);
    expect(fsType).to.equal('tmpfs');
    expect(opts?.split(',')).to.include.members(['noexec', 'nosuid', 'nodev']);
    // On the host: the kernel directory is that tmpfs (its pages are the container's memory),
    // not a directory of the host's disk.
    const info = await containerOf(kernels.bystander);
    const mount = info.Mounts.find((m) => m.Destination === '/run/kernel');
    expect(mount, 'a mount at /run/kernel').to.not.equal(undefined);
    expect(mount?.Type, 'no host bind mount').to.equal('volume');
    expect(statfsSync(mount?.Source ?? '/').type, 'the host side is the tmpfs').to.equal(
      TMPFS_MAGIC,
    );
  });

  it('a program written into the kernel directory cannot be executed', async () => {
    const out = await run(
      kernels.bystander,
      [
        'import os, shutil, subprocess',
        "shutil.copy('/bin/true', '/run/kernel/t')",
        "open('/run/kernel/s', 'w').write('#!/bin/sh\\nexit 0\\n')",
        'res = []',
        "for p in ('/run/kernel/t', '/run/kernel/s'):",
        '    os.chmod(p, 0o755)',
        '    try:',
        "        subprocess.run([p], check=True); res.append('ran')",
        '    except PermissionError:',
        "        res.append('refused')",
        '    os.remove(p)',
        "print(' '.join(res))",
      ].join('\n'),
    );
    expect(out.trim()).to.equal('refused refused');
  });

  it('each sandbox runs as its own uid, which maps to no host account (not 1000)', async () => {
    /** Real, effective, saved and fs uid of a kernel's init and its children, read on the host. */
    async function hostUids(kernelId: string): Promise<number[][]> {
      const pid = (await containerOf(kernelId)).State.Pid;
      expect(pid, 'the container has a host pid').to.be.above(0);
      const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
        .trim()
        .split(/\s+/);
      return [pid, ...children.map(Number)].map((p) => {
        const line = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(
          readFileSync(`/proc/${p}/status`, 'utf8'),
        );
        return line ? line.slice(1).map(Number) : [];
      });
    }
    const accounts = new Set(
      readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .map((l) => Number(l.split(':')[2])),
    );
    const perKernel = new Map<string, number>();
    for (const k of Object.values(kernels)) {
      const uids = await hostUids(k);
      expect(uids.length, 'init and the kernel').to.be.at.least(2);
      for (const ids of uids) {
        expect(ids, 'real, effective, saved and fs uid').to.have.length(4);
        expect(new Set(ids).size, 'one uid throughout').to.equal(1);
        expect(ids[0], 'not uid 1000').to.not.equal(1000);
        expect(ids[0], 'not root').to.not.equal(0);
        expect(accounts.has(ids[0] ?? 0), `uid ${ids[0]} names a host account`).to.equal(false);
      }
      perKernel.set(k, uids[0]?.[0] ?? 0);
    }
    // One uid per sandbox: a process that escaped one could not signal another's.
    expect(new Set(perKernel.values()).size, 'distinct uids').to.equal(perKernel.size);
    const health = (await (await api('/api/security/health')).json()) as {
      controls: {
        user?: {
          uid_first: number;
          uid_count: number;
          host_account: string[];
          in_force_on_live_sandboxes: boolean;
          one_uid_per_sandbox: boolean;
        };
      };
    };
    const user = health.controls.user;
    expect(user?.host_account).to.deep.equal([]);
    expect(user?.in_force_on_live_sandboxes).to.equal(true);
    expect(user?.one_uid_per_sandbox).to.equal(true);
    for (const uid of perKernel.values())
      expect(uid).to.be.within(
        user?.uid_first ?? 0,
        (user?.uid_first ?? 0) + (user?.uid_count ?? 0) - 1,
      );
  });

  it('after a SIGKILL and restart: no kernel lost, no hang, no hijack, no symlink followed', async () => {
    await run(kernels.victim, "x = 41\nopen('/workspace/who', 'w').write('victim')");
    await run(kernels.bystander, 'y = 7');
    await run(kernels.hijacker, "mine = 'hijacker'");
    // Invalid JSON where the env hand-over lives, and a FIFO where the kernel id was read from.
    const junk = await run(
      kernels.junk,
      [
        'import os',
        'res = []',
        "for name, make in (('env.json', lambda p: open(p, 'w').write('{not json')), ('kernel-id', os.mkfifo)):",
        "    p = '/run/kernel/' + name",
        '    try:',
        '        if os.path.lexists(p): os.remove(p)',
        '        make(p); res.append(name)',
        '    except OSError as e:',
        "        res.append(f'{name}:{e.strerror}')",
        'print(res)',
      ].join('\n'),
    );
    // The victim's id where the kernel id was read from, the connection file rewritten with a key
    // of its choosing, and the shell socket turned into a link to a root-only host socket.
    const trapPath = path.join(trapDir, 'trap.sock');
    const hijack = await run(
      kernels.hijacker,
      [
        'import json, os',
        'res = []',
        'def attempt(what, f):',
        '    try:',
        '        f(); res.append(what)',
        '    except OSError as e:',
        "        res.append(f'{what}:{e.strerror}')",
        'def kid():',
        "    p = '/run/kernel/kernel-id'",
        '    if os.path.lexists(p): os.remove(p)',
        `    open(p, 'w').write('${kernels.victim}')`,
        'def conn():',
        "    p = '/run/kernel/connection.json'",
        "    c = json.load(open(p)); c['key'] = '0' * 64",
        "    os.remove(p); open(p, 'w').write(json.dumps(c))",
        'def link():',
        "    os.rename('/run/kernel/k-1', '/run/kernel/k-1.old')",
        `    os.symlink('${trapPath}', '/run/kernel/k-1')`,
        "attempt('kernel-id', kid)",
        "attempt('connection.json', conn)",
        "attempt('symlink', link)",
        'print(res)',
      ].join('\n'),
    );
    // The sockets were sealed before any user code ran: the kernel cannot move or replace them.
    expect(hijack, 'replacing the shell socket by a link').to.include(
      'symlink:Operation not permitted',
    );

    const before = await labelled();
    await killGatewayProcess(gw);
    // No hang: the restarted gateway listens (startGatewayProcess's own deadline).
    gw = await startGatewayProcess(env);
    const ids = ((await (await api('/api/kernels')).json()) as { id: string }[]).map((k) => k.id);
    expect(ids, `no kernel lost (attacks: ${junk.trim()} ${hijack.trim()})`).to.have.members(
      Object.values(kernels),
    );
    // No hijack: each id is served by its own sandbox, with its own state.
    expect(await run(kernels.victim, "print(x, open('/workspace/who').read())")).to.equal(
      '41 victim\n',
    );
    expect(await run(kernels.bystander, 'print(y)')).to.equal('7\n');
    expect(await run(kernels.hijacker, 'print(mine)')).to.equal('hijacker\n');
    const after = await labelled();
    expect(after.map((c) => c.Id).sort(), 'the same sandboxes, none reaped').to.deep.equal(
      before.map((c) => c.Id).sort(),
    );
    // Every kernel answered through its sockets, so each was connected: none through the link.
    expect(trapConnections, 'connections to the root-only host socket').to.equal(0);
  });

  it('a second gateway on the same state dir refuses to start while the first lives', async () => {
    const second = await runGatewayToExit(env);
    expect(second.code, second.out).to.not.equal(0);
    expect(second.out).to.match(/another gateway is running on the state dir/);
    // The first one is untouched.
    expect(await run(kernels.victim, 'print(x)')).to.equal('41\n');
  });
});

describe('regression: Docker unreachable while creating the kernel directory', function () {
  this.timeout(60_000);

  it('answers 503 RUNTIME_UNAVAILABLE, not 500 (the clean-up error does not hide the cause)', async () => {
    const t = await startTestGateway({ dockerSocket: '/tmp/aido-no-such-docker.sock' });
    try {
      const res = await t.api('/api/kernels', { method: 'POST', body: '{}' });
      expect(res.status).to.equal(503);
      expect(((await res.json()) as { message: string }).message).to.match(
        /Docker Engine is not reachable \(ENOENT\) while creating the kernel directory/,
      );
    } finally {
      await t.close();
    }
  });
});
