/**
 * The kernel image, started hardened by the runtime adapter, reached from Node with zeromq.js over
 * ipc in its per-kernel directory: kernel_info_reply, then `1+1` → execute_result 2 on iopub.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { expect } from 'chai';
import Docker from 'dockerode';
import * as zmq from 'zeromq';
import {
  createMessage,
  decodeZmq,
  encodeZmq,
  executeRequest,
  fromRaw,
  Signer,
  toRaw,
  type JupyterMessage,
} from '../../protocol/index.js';
import { DEFAULT_SANDBOX_UID, KERNEL_SOCKETS, SANDBOX_UID_COUNT } from '../../security/policy.js';
import { DockerRuntime } from '../../gateway/runtime/docker-runtime.js';
import { policyFrom } from '../../gateway/server.js';
import { loadConfig } from '../../gateway/base/config.js';
import type { Sandbox } from '../../gateway/runtime/runtime.js';
import { kernelImage } from '../helpers/gateway.js';
import { waitUntil } from '../helpers/wait.js';

async function receiveUntil(
  sock: zmq.Subscriber | zmq.Dealer,
  signer: Signer,
  channel: 'iopub' | 'shell',
  pred: (m: JupyterMessage) => boolean,
  what: string,
): Promise<JupyterMessage> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    const frames = await sock.receive();
    const msg = fromRaw(decodeZmq(frames, channel, signer).raw);
    if (pred(msg)) return msg;
  }
}

describe('hardened kernel container over ipc (zeromq.js, no gateway)', function () {
  this.timeout(90_000);
  const docker = new Docker();
  let stateDir: string;
  let sandbox: Sandbox;

  before(async () => {
    stateDir = mkdtempSync('/tmp/aido-s-');
    const config = loadConfig({}, [], { stateDir, kernelImage: kernelImage() });
    const runtime = new DockerRuntime({
      docker,
      stateDir,
      image: config.kernelImage,
      policy: policyFrom(config),
      hostHasAppArmor: false,
      startCpus: 0,
      instance: 'container-smoke',
    });
    sandbox = await runtime.createSandbox('00000000-0000-4000-8000-000000000001', {});
  });
  after(async () => {
    await sandbox.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('runs with the hardened settings Docker reports back', async () => {
    const info = await docker.getContainer(sandbox.id).inspect();
    const h = info.HostConfig;
    // Its own uid from the sandbox range, the same as gid.
    const [uid, gid] = info.Config.User.split(':').map(Number);
    expect(uid).to.equal(gid);
    expect(uid).to.be.within(DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID + SANDBOX_UID_COUNT - 1);
    expect(h.NetworkMode).to.equal('none');
    expect(h.ReadonlyRootfs).to.equal(true);
    expect(h.CapDrop).to.deep.equal(['ALL']);
    expect(
      (h.SecurityOpt as string[] | undefined)?.some((o: string) =>
        o.startsWith('no-new-privileges'),
      ),
    ).to.equal(true);
    expect(
      (h.SecurityOpt as string[] | undefined)?.some((o: string) => o.startsWith('seccomp=')),
    ).to.equal(true);
    expect(h.Memory).to.equal(512 * 1024 * 1024);
    expect(h.MemorySwap).to.equal(h.Memory);
    expect(h.NanoCpus).to.equal(0.5e9);
    expect(h.PidsLimit).to.equal(50);
    expect(h.Ulimits).to.deep.include({ Name: 'nofile', Soft: 1024, Hard: 1024 });
    expect(Object.keys(h.Tmpfs ?? {})).to.have.members(['/tmp', '/workspace']);
    expect(h.Binds ?? []).to.have.length(0);
    expect(info.Mounts.map((m) => [m.Type, m.Destination])).to.deep.equal([
      ['volume', '/run/kernel'],
    ]);
    // The log is rotated and capped whatever the daemon's default driver.
    expect(h.LogConfig).to.deep.equal({
      Type: 'local',
      Config: { 'max-size': '1048576', 'max-file': '2', compress: 'false' },
    });
  });

  it('answers kernel_info and evaluates 1+1 to execute_result 2 on iopub', async () => {
    const signer = new Signer(sandbox.connection.key);
    const shell = new zmq.Dealer({ routingId: 'smoke', linger: 0 });
    const iopub = new zmq.Subscriber({ linger: 0 });
    shell.connect(sandbox.connection.endpoints.shell);
    iopub.subscribe();
    iopub.connect(sandbox.connection.endpoints.iopub);
    try {
      let info: JupyterMessage | undefined;
      // Until the kernel answers on shell AND the SUB has received something: a PUB drops what it
      // publishes before the subscription reaches it (ZeroMQ's slow joiner).
      let iopubLive = false;
      shell.receiveTimeout = 500;
      iopub.receiveTimeout = 200;
      const deadline = Date.now() + 60_000;
      while (!(info && iopubLive) && Date.now() < deadline) {
        const req = createMessage({
          msgType: 'kernel_info_request',
          channel: 'shell',
          session: 'smoke',
          content: {},
        });
        await shell.send(encodeZmq(toRaw(req), signer));
        try {
          info ??= await receiveUntil(
            shell,
            signer,
            'shell',
            (m) => m.header.msg_type === 'kernel_info_reply',
            'kernel_info_reply',
          );
        } catch {
          // not up yet: ask again
        }
        try {
          await iopub.receive();
          iopubLive = true;
        } catch {
          // nothing published to us yet
        }
      }
      expect(iopubLive, 'the iopub subscription is live').to.equal(true);
      expect(info?.content.status).to.equal('ok');
      // Bounded waits from here on: a lost message fails the test instead of hanging it.
      shell.receiveTimeout = 30_000;
      iopub.receiveTimeout = 30_000;
      const exec = executeRequest('smoke', '1+1', { store_history: true });
      await shell.send(encodeZmq(toRaw(exec), signer));
      const result = await receiveUntil(
        iopub,
        signer,
        'iopub',
        (m) => m.header.msg_type === 'execute_result',
        'execute_result',
      );
      expect((result.content.data as Record<string, string>)['text/plain']).to.equal('2');
      expect((result.parent_header as { msg_id: string }).msg_id).to.equal(exec.header.msg_id);
    } finally {
      shell.close();
      iopub.close();
    }
  });

  it('starts with the start-up CPU quota when asked, and enforceLimits lowers it to the policy', async () => {
    const config = loadConfig({}, [], { stateDir, kernelImage: kernelImage() });
    const runtime = new DockerRuntime({
      docker,
      stateDir,
      image: config.kernelImage,
      policy: policyFrom(config),
      hostHasAppArmor: false,
      startCpus: 1,
      instance: 'container-smoke',
    });
    const boosted = await runtime.createSandbox('00000000-0000-4000-8000-000000000002', {});
    try {
      expect((await docker.getContainer(boosted.id).inspect()).HostConfig.NanoCpus).to.equal(1e9);
      // enforceLimits also seals the kernel directory, which needs the kernel's sockets bound.
      await waitUntil(
        () => KERNEL_SOCKETS.every((n) => existsSync(boosted.hostPath(n) ?? '')),
        'the kernel to bind its ipc sockets',
      );
      await boosted.enforceLimits();
      expect((await docker.getContainer(boosted.id).inspect()).HostConfig.NanoCpus).to.equal(0.5e9);
    } finally {
      await boosted.destroy();
    }
  });
});
