/**
 * The kernel Pod's containers, run for real on Docker as a kubelet would run them: a holder
 * container keeps the pod's shared /run/kernel tmpfs (as the pause container does), the init
 * container copies the connection file from the Secret's mount into it, then the kernel container
 * starts with the Pod's command (tini, then prlimit, then ipykernel) and args, its user, read-only
 * root, memory-backed mounts of the Pod's sizes and ZeroMQ over TCP on the Pod's ports. No cluster
 * runs here; what this proves is that the Pod built by security/pod-spec.ts starts a working
 * kernel from the real image (shell, iopub, control and heartbeat answer over TCP), with tini as
 * PID 1 and RLIMIT_NOFILE enforced by the pod itself and not raisable.
 *
 * Network `none` keeps the test on the container's loopback: the probe runs inside the kernel
 * container (docker exec, uid 1000) and reaches the kernel at 127.0.0.1.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import Docker from 'dockerode';
import type { Container } from 'kubernetes-types/core/v1.js';
import {
  CONNECTION_FILE_KEY,
  KERNEL_NAMESPACE,
  buildConnectionSecret,
  buildKernelPod,
  tcpConnectionFile,
} from '../../security/pod-spec.js';
import { DEFAULT_POLICY } from '../../security/policy.js';
import { seccompProfileJson } from '../../security/seccomp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TEST_LABEL = 'org.aido.kernel-gateway.test.kernel-pod';

function imageTag(): string {
  const fromEnv = process.env.AIDO_KERNEL_IMAGE;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return execFileSync('bash', [path.join(repoRoot, 'kernel-image/build.sh'), '--print-tag'], {
    encoding: 'utf8',
  }).trim();
}

/** A Kubernetes memory quantity as bytes (`Mi` or plain). */
function bytes(q: string | undefined): number {
  if (q === undefined) throw new Error('no quantity');
  return q.endsWith('Mi') ? Number(q.slice(0, -2)) * 1024 * 1024 : Number(q);
}

class Collector extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.chunks.push(chunk);
    done();
  }
}

/** Connects over TCP with the reference client, runs one cell, prints what it learnt as JSON. */
const PROBE = String.raw`
import json, sys
from jupyter_client import BlockingKernelClient
c = BlockingKernelClient()
# The connection info comes on stdin (the gateway's copy), not from the file, which the kernel
# removes and rewrites while it starts.
c.load_connection_info(json.load(sys.stdin))
c.ip = '127.0.0.1'
# No heartbeat channel in the client: without a kernel manager, jupyter_client would call a kernel
# "dead" while its paused heartbeat has not beaten yet. The hb port is checked by hand below.
c.start_channels(hb=False)
c.wait_for_ready(timeout=90)
import zmq
hb = zmq.Context.instance().socket(zmq.REQ)
hb.setsockopt(zmq.LINGER, 0)
hb.connect(f'tcp://127.0.0.1:{c.hb_port}')
hb.send(b'ping')
hb_echo = hb.recv().decode() if hb.poll(10000) else None
ctl = zmq.Context.instance().socket(zmq.DEALER)
ctl.setsockopt(zmq.LINGER, 0)
ctl.connect(f'tcp://127.0.0.1:{c.control_port}')
c.session.send(ctl, 'kernel_info_request')
control = None
if ctl.poll(10000):
    _, parts = c.session.feed_identities(ctl.recv_multipart())
    control = c.session.deserialize(parts)['header']['msg_type']
out = []
code = '''
import json, os, resource
facts = {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
         "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
         "pid1": open("/proc/1/comm").read().strip()}
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    facts["raise"] = "raised"
except (ValueError, OSError) as e:
    facts["raise"] = type(e).__name__
print(json.dumps(facts))
'''
def hook(msg):
    if msg['msg_type'] == 'stream':
        out.append(msg['content']['text'])
reply = c.execute_interactive(code, timeout=30, output_hook=hook)
print(json.dumps({"status": reply['content']['status'], "transport": c.transport,
                  "hb": hb_echo, "control": control,
                  "facts": json.loads(''.join(out))}))
`;

describe('the kernel Pod container, run on Docker as a kubelet would (real image)', function () {
  this.timeout(180_000);
  const docker = new Docker();
  const runId = randomUUID();
  let dir = '';
  let volumeName = '';

  after(async () => {
    const mine = await docker.listContainers({
      all: true,
      filters: { label: [`${TEST_LABEL}=${runId}`] },
    });
    await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
    if (volumeName) await docker.getVolume(volumeName).remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('starts ipykernel under tini with the pod-enforced open-files limit, reachable over TCP', async () => {
    const objects = buildKernelPod(
      {
        policy: DEFAULT_POLICY,
        image: imageTag(),
        kernelId: runId,
        kernelDir: '/unused',
        labels: { 'org.aido.kernel-gateway': '1' },
        env: { KERNEL_ID: runId },
        name: `aido-k-${runId.slice(0, 8)}`,
        hostHasAppArmor: false,
      },
      { namespace: KERNEL_NAMESPACE },
    );
    const spec = objects.pod.spec!;
    const c = spec.containers[0]!;
    const uid = c.securityContext!.runAsUser!;
    const gid = c.securityContext!.runAsGroup!;
    const secret = buildConnectionSecret(
      objects,
      tcpConnectionFile(randomBytes(32).toString('hex')),
    );

    // The Secret's file as the kubelet mounts it: root-owned, group fsGroup, defaultMode.
    dir = mkdtempSync(path.join(tmpdir(), 'aido-kernel-pod-'));
    const file = path.join(dir, CONNECTION_FILE_KEY);
    writeFileSync(file, secret.stringData![CONNECTION_FILE_KEY]!);
    chownSync(dir, 0, spec.securityContext!.fsGroup!);
    chmodSync(dir, 0o750);
    chownSync(file, 0, spec.securityContext!.fsGroup!);
    const secretVolume = spec.volumes!.find((v) => v.secret)!;
    chmodSync(file, secretVolume.secret!.defaultMode!);

    // /run/kernel is shared by the init container and the kernel: a tmpfs volume, mode 0777 like
    // the kubelet's emptyDir. The other emptyDirs are per-container tmpfs mounts of their size.
    const kernelDir = spec.volumes!.find((v) => v.name === 'kernel-dir')!;
    await docker.createVolume({
      Name: `aido-test-kernel-dir-${runId}`,
      Driver: 'local',
      DriverOpts: {
        type: 'tmpfs',
        device: 'tmpfs',
        o: `size=${bytes(kernelDir.emptyDir?.sizeLimit)},mode=0777`,
      },
      Labels: { [TEST_LABEL]: runId },
    });
    volumeName = `aido-test-kernel-dir-${runId}`;

    /** A container of the pod as Docker create options, with the pod's confinement. */
    const asDocker = (
      k: Container,
      extra: { Entrypoint: string[]; Cmd: string[] },
    ): Docker.ContainerCreateOptions => {
      const tmpfs: Record<string, string> = {};
      let shm = 0;
      const mounts: Docker.MountSettings[] = [];
      for (const m of k.volumeMounts ?? []) {
        const v = spec.volumes!.find((x) => x.name === m.name)!;
        if (v.name === 'kernel-dir') {
          mounts.push({
            Type: 'volume',
            Source: volumeName,
            Target: m.mountPath,
            ReadOnly: false,
            VolumeOptions: { NoCopy: true },
          } as Docker.MountSettings);
        } else if (v.secret) {
          mounts.push({ Type: 'bind', Source: dir, Target: m.mountPath, ReadOnly: true });
        } else if (m.mountPath === '/dev/shm') {
          shm = bytes(v.emptyDir?.sizeLimit);
        } else {
          tmpfs[m.mountPath] = `rw,size=${bytes(v.emptyDir?.sizeLimit)},mode=0777`;
        }
      }
      const sc = k.securityContext!;
      return {
        Image: k.image!,
        ...extra,
        Env: (k.env ?? []).map((e) => `${e.name}=${e.value}`),
        WorkingDir: k.workingDir ?? '/',
        User: `${sc.runAsUser}:${sc.runAsGroup}`,
        Labels: { [TEST_LABEL]: runId },
        NetworkDisabled: true,
        HostConfig: {
          NetworkMode: 'none',
          ReadonlyRootfs: sc.readOnlyRootFilesystem!,
          CapDrop: sc.capabilities!.drop!,
          SecurityOpt: ['no-new-privileges:true', `seccomp=${seccompProfileJson()}`],
          Memory: bytes(k.resources!.limits!.memory),
          MemorySwap: bytes(k.resources!.limits!.memory),
          NanoCpus: Number(k.resources!.limits!.cpu!.slice(0, -1)) * 1e6,
          PidsLimit: DEFAULT_POLICY.limits.pids,
          Tmpfs: tmpfs,
          ...(shm > 0 ? { ShmSize: shm } : {}),
          Mounts: mounts,
          Dns: spec.dnsConfig!.nameservers!,
        },
      };
    };

    // The pod's sandbox: like the kubelet's pause container, it holds the shared tmpfs volume
    // mounted from before the init container until the end (Docker unmounts a tmpfs volume, and
    // drops its files, when no container uses it).
    const holder = await docker.createContainer({
      ...asDocker(c, { Entrypoint: ['/usr/bin/sleep'], Cmd: ['infinity'] }),
    });
    await holder.start();

    // The init container first, to completion, as the kubelet runs it.
    const i = spec.initContainers![0]!;
    const init = await docker.createContainer(asDocker(i, { Entrypoint: i.command!, Cmd: [] }));
    await init.start();
    const initExit = (await init.wait()) as { StatusCode: number };
    const initLogs = (await init.logs({ stdout: true, stderr: true })).toString('utf8');
    expect(initExit.StatusCode, `init container: ${initLogs}`).to.equal(0);

    const container = await docker.createContainer(
      asDocker(c, { Entrypoint: c.command!, Cmd: c.args! }),
    );
    await container.start();

    const exec = await container.exec({
      Cmd: ['python3', '-c', PROBE],
      User: `${uid}:${gid}`,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
    });
    const stream = await exec.start({ hijack: true, stdin: true });
    const stdout = new Collector();
    const stderr = new Collector();
    docker.modem.demuxStream(stream, stdout, stderr);
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error('timed out after 120 s waiting for the TCP probe of the kernel pod'));
      }, 120_000);
      stream.once('end', () => {
        clearTimeout(timer);
        resolve();
      });
      stream.once('error', (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    // Ending our side of the hijacked connection is the probe's end of input.
    stream.end(secret.stringData![CONNECTION_FILE_KEY]!);
    await done;
    const text = Buffer.concat(stdout.chunks).toString('utf8');
    const errText = Buffer.concat(stderr.chunks).toString('utf8');
    if ((await exec.inspect()).ExitCode !== 0) {
      const logs = await container.logs({ stdout: true, stderr: true, tail: 40 });
      const state = (await container.inspect()).State;
      expect.fail(
        `the probe failed: ${errText}\nkernel container ${JSON.stringify(state)}:\n${logs.toString('utf8')}`,
      );
    }
    const result = JSON.parse(text) as {
      status: string;
      transport: string;
      hb: string | null;
      control: string;
      facts: {
        uid: number;
        gid: number;
        cwd: string;
        nofile: number[];
        pid1: string;
        raise: string;
      };
    };
    const nofile = DEFAULT_POLICY.limits.nofile;
    expect(result).to.deep.equal({
      status: 'ok',
      transport: 'tcp',
      hb: 'ping',
      control: 'kernel_info_reply',
      facts: {
        uid,
        gid,
        cwd: c.workingDir,
        nofile: [nofile, nofile],
        pid1: 'tini',
        raise: 'ValueError',
      },
    });
  });
});
