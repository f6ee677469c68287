/**
 * The security suite, part two: the controls that end sandboxes, checked through the gateway with
 * real kernels: DELETE leaves nothing behind, the memory limit kills only the kernel that broke
 * it, and panic ends every kernel while the gateway keeps serving. The controls seen from inside a
 * kernel are in `security-suite.test.ts`.
 *
 * Needs Docker and the kernel image (AIDO_KERNEL_IMAGE, else `kernel-image/build.sh --print-tag`).
 * Set AIDO_SKIP_DOCKER=1 to skip.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';
import Docker from 'dockerode';
import { LABEL_KERNEL_VOLUME, LABEL_STATE_DIR } from '../../security/labels.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { KernelProbe } from '../helpers/kernel-probe.js';
import type { TestClient } from '../helpers/ws-client.js';

use(chaiAsPromised);

const skip = process.env.AIDO_SKIP_DOCKER === '1';

interface Model {
  id: string;
  execution_state: string;
  reason?: string;
}

/** Resolves with `p`, or rejects naming `what` once `ms` have passed. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
  });
  return Promise.race([p, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

function isDeadStatus(m: { header: { msg_type: string }; content: Record<string, unknown> }) {
  return m.header.msg_type === 'status' && m.content.execution_state === 'dead';
}

describe('security suite: sandboxes end cleanly (DELETE, memory limit, panic)', function () {
  this.timeout(120_000);
  const docker = new Docker();
  let t: TestGateway;
  /** The gateway's sandbox records (one per bound sandbox). */
  let recordsDir: string;
  const probes: KernelProbe[] = [];

  let started = false;

  before(async function () {
    if (skip) this.skip();
    t = await startTestGateway();
    started = true;
    recordsDir = path.join(t.gw.config.stateDir, 'sandboxes');
  });
  after(async () => {
    for (const p of probes) p.close();
    if (started) await t.close();
  });

  async function open(kernelId: string): Promise<KernelProbe> {
    const p = await KernelProbe.open(t, kernelId);
    probes.push(p);
    return p;
  }

  async function model(id: string): Promise<{ status: number; body: Model }> {
    const res = await t.api(`/api/kernels/${id}`);
    return { status: res.status, body: (await res.json()) as Model };
  }

  /** Polls the kernel model until `pred` holds (the gateway updates it on the same event). */
  async function modelUntil(id: string, pred: (m: Model) => boolean, what: string): Promise<Model> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const { status, body } = await model(id);
      if (status === 200 && pred(body)) return body;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; last model: ${JSON.stringify(body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function containerIds(): Promise<string[]> {
    return (await t.gw.runtime.list()).map((c) => c.sandboxId);
  }

  function containerOf(kernelId: string): string {
    const id = t.gw.kernels.find(kernelId)?.sandboxId;
    if (id === undefined) throw new Error(`kernel ${kernelId} has no container`);
    return id;
  }

  it('DELETE /api/kernels/{id}: no container, no volume and no directory is left', async () => {
    const k = await t.startKernel();
    const p = await open(k.id);
    await p.run('write into the sandbox', "open('/workspace/data.txt', 'w').write('x' * 4096)");
    const containerId = containerOf(k.id);
    const info = await docker.getContainer(containerId).inspect();
    const volumes = info.Mounts.filter((m) => m.Type === 'volume').map((m) => m.Name!);
    const kernelVolume = info.Config.Labels[LABEL_KERNEL_VOLUME]!;
    // The controls: while the kernel lives, its container and directory are there to be found.
    expect(await containerIds()).to.deep.equal([containerId]);
    expect(volumes).to.deep.equal([kernelVolume]);
    expect(existsSync(path.join(recordsDir, `${containerId}.json`))).to.equal(true);

    const res = await t.api(`/api/kernels/${k.id}`, { method: 'DELETE' });
    expect(res.status).to.equal(204);
    await within(p.client.closed, 10_000, "the deleted kernel's socket to close");

    expect(await containerIds(), 'sandboxes of this gateway').to.deep.equal([]);
    await expect(
      docker.getContainer(containerId).inspect(),
    ).to.be.rejected.and.eventually.have.property('statusCode', 404);
    const left = (await docker.listVolumes()).Volumes;
    expect(
      left.filter(
        (v) =>
          volumes.includes(v.Name) ||
          (v.Labels as Record<string, string> | null)?.[LABEL_STATE_DIR] === t.gw.config.stateDir,
      ),
      "the sandbox's volumes",
    ).to.deep.equal([]);
    expect(await readdir(recordsDir), `entries in ${recordsDir}`).to.deep.equal([]);
    expect((await model(k.id)).status).to.equal(404);
  });

  let survivor: KernelProbe;
  let oomKernel: string;

  it('memory: touching 1 GB OOM-kills that kernel (model dead, reason OOM, clients told) and no other', async () => {
    const [victim, other] = await Promise.all([t.startKernel(), t.startKernel()]);
    oomKernel = victim.id;
    const [p, q] = await Promise.all([open(victim.id), open(other.id)]);
    survivor = q;
    // The control: the survivor runs before, so that "still runs" below means something.
    await q.run('the other kernel runs before', 'assert 1 + 1 == 2');
    const limits = await p.json<{ memory: string | null; memoryAndSwap: string | null }>(
      'the memory limit as the kernel sees it',
      `
import os
def _read(*paths):
    for p in paths:
        if os.path.exists(p):
            with open(p) as f:
                return f.read().strip()
    return None
_aido_emit({'memory': _read('/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory.max'),
            'memoryAndSwap': _read('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes')})
`,
    );
    expect(limits.memory, 'memory limit').to.equal(String(512 * 1024 * 1024));
    // cgroup v1 with swap accounting: memory + swap capped at the same figure, so no swap.
    if (limits.memoryAndSwap !== null) expect(limits.memoryAndSwap).to.equal(limits.memory);

    const dead = p.client.waitFor(isDeadStatus, 'status dead after the OOM kill', 60_000);
    // bytes * n writes every page: well past the 512 MB limit.
    const r = await p.client.execute("b = b'x' * (1024 ** 3)\nprint(len(b))", 60_000);
    expect(r.reply.content.status, 'the execution that hit the limit').to.equal('error');
    expect(r.reply.content.ename).to.equal('KernelDied');
    await dead;
    const m = await modelUntil(
      victim.id,
      (x) => x.execution_state === 'dead' && x.reason !== undefined,
      'the dead model with its reason',
    );
    expect(m.reason).to.match(/OOM/);
    const info = await docker.getContainer(containerOf(victim.id)).inspect();
    expect(info.State.OOMKilled, 'Docker says OOM-killed').to.equal(true);

    const after = await q.client.execute('print(sum(range(10)))');
    expect(after.reply.content.status, 'the other kernel after the OOM kill').to.equal('ok');
    expect((await model(other.id)).body.execution_state).to.equal('idle');
  });

  it('panic: POST /api/security/panic ends every kernel and sandbox; the gateway then starts a new kernel', async () => {
    const third = await t.startKernel();
    const p = await open(third.id);
    const live = [survivor, p];
    const ids = [oomKernel, survivor.kernelId, third.id];
    const containers = ids.map(containerOf);
    expect(await containerIds(), 'sandboxes before panic').to.have.members(containers);

    const told = live.map((probe: KernelProbe) => {
      const c: TestClient = probe.client;
      return within(
        Promise.race([c.closed, c.waitFor(isDeadStatus, 'status dead after panic', 30_000)]),
        30_000,
        `kernel ${probe.kernelId}'s client to get status dead or a close`,
      );
    });
    const res = await t.api('/api/security/panic', { method: 'POST' });
    expect(res.status).to.equal(200);
    const body = (await res.json()) as { killed: number };
    expect(body.killed, 'killed').to.be.at.least(ids.length);
    await Promise.all(told);

    for (const id of ids) expect((await model(id)).status, `model of ${id}`).to.equal(404);
    expect(await containerIds(), 'sandboxes after panic').to.deep.equal([]);
    for (const c of containers)
      await expect(docker.getContainer(c).inspect(), `container ${c}`).to.be.rejected;
    expect(await readdir(recordsDir), `entries in ${recordsDir}`).to.deep.equal([]);

    const fresh = await t.startKernel();
    const f = await open(fresh.id);
    const r = await f.client.execute('print(6 * 7)');
    expect(r.reply.content.status).to.equal('ok');
    expect(
      r.iopub.some((m) => m.header.msg_type === 'stream' && m.content.text === '42\n'),
      'output of the new kernel',
    ).to.equal(true);
  });
});
