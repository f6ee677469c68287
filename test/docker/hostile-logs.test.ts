/**
 * A hostile kernel against the host's disk, through its container log: ipykernel captures fd 1
 * and 2 into iopub but keeps a copy of the container's own stdout (and echoes to it), so a kernel
 * can write to the stdout Docker logs, at any rate. With Docker's default json-file driver and no
 * rotation, 50 MB written left 56 MB on the host (measured on this host). The sandbox's LogConfig
 * (security/policy.ts: the `local` driver, 2 files of 1 MiB) caps it. Real gateway, real sandbox.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import { KERNEL_LOG_MAX_FILES, KERNEL_LOG_MAX_SIZE_BYTES } from '../../security/policy.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { waitUntil } from '../helpers/wait.js';
import { stdout, TestClient } from '../helpers/ws-client.js';

const MiB = 1024 * 1024;
const FLOOD_BYTES = 50 * MiB;
const MARKER = 'hostile-logs-end-of-flood';

/**
 * Writes FLOOD_BYTES to the container's stdout: the descriptor ipykernel keeps of it, checked to be
 * the same pipe as PID 1's stdout (the one Docker reads), then a marker line.
 */
const FLOOD = String.raw`
import os, sys
out = sys.stdout._original_stdstream_copy
same = os.readlink(f'/proc/self/fd/{out}') == os.readlink('/proc/1/fd/1')
chunk = (b'x' * 1023 + b'\n') * 64
n = 0
while n < ${FLOOD_BYTES}:
    n += os.write(out, chunk)
os.write(out, b'${MARKER}\n')
print(same, n)
`;

/** Bytes in every file under a directory. */
function bytesIn(dir: string): number {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => statSync(path.join(dir, f)))
    .reduce((sum, st) => sum + (st.isFile() ? st.size : 0), 0);
}

describe('hostile kernel: its container log on the host stays capped (real gateway, real sandbox)', function () {
  this.timeout(180_000);
  const docker = new Docker();
  let t: TestGateway | undefined;

  before(async () => {
    t = await startTestGateway();
  });

  after(async () => {
    await t?.close();
  });

  it('50 MB written to the container stdout leave at most 2 x 1 MiB of log on the host', async () => {
    const gw = t!;
    const kernel = await gw.startKernel();
    const listed = (await (await gw.api('/api/security/containers')).json()) as {
      container_id?: string;
      kernel_id?: string | null;
    }[];
    const containerId = listed.find((c) => c.kernel_id === kernel.id)?.container_id;
    if (containerId === undefined) throw new Error(`no container listed for ${kernel.id}`);
    const container = docker.getContainer(containerId);
    const info = await container.inspect();

    const client = await TestClient.connect(`${gw.wsBase}/api/kernels/${kernel.id}/channels`, {
      token: gw.token,
    });
    try {
      const flood = await client.execute(FLOOD, 60_000);
      expect(flood.reply.content.status, JSON.stringify(flood.reply.content)).to.equal('ok');
      // The kernel wrote it all, to the stdout Docker reads.
      const [same, written] = stdout(flood).trim().split(' ');
      expect(same).to.equal('True');
      expect(Number(written)).to.be.at.least(FLOOD_BYTES);

      // The log keeps the newest output: the marker arrives once dockerd has copied the flood.
      const tail = async (): Promise<string> =>
        (await container.logs({ stdout: true, stderr: true, tail: 1 })).toString('utf8');
      await waitUntil(
        async () => (await tail()).includes(MARKER),
        'the end-of-flood marker in the container log',
        30_000,
      );

      // Whatever the driver, its files live in the container's directory on the host (json-file's
      // LogPath, the local driver's local-logs/), beside a few KiB of config.
      const root = (await docker.info()) as { DockerRootDir: string };
      const onDisk = bytesIn(path.join(root.DockerRootDir, 'containers', info.Id));
      // Rotation happens before the write that would pass max-size: one message (at most 16 KiB
      // of line plus framing) of slack per file, and 64 KiB for the config files.
      const cap = KERNEL_LOG_MAX_FILES * (KERNEL_LOG_MAX_SIZE_BYTES + 32 * 1024) + 64 * 1024;
      expect(onDisk, `${onDisk} bytes on the host for ${written} written`).to.be.at.most(cap);
      expect(info.HostConfig.LogConfig?.Type).to.equal('local');
      const logs = path.join(root.DockerRootDir, 'containers', info.Id, 'local-logs');
      expect(readdirSync(logs).length).to.be.at.most(KERNEL_LOG_MAX_FILES);

      // The kernel and the gateway carry on.
      const after = await client.execute('print(6 * 7)');
      expect(stdout(after).trim()).to.equal('42');
    } finally {
      client.close();
    }
  });
});
