/**
 * The kernel Pod's container, run for real on Docker as a kubelet would run it: the container's
 * environment resolved as the kubelet does (AIDO_CONNECTION from the kernel's Secret, through
 * `secretKeyRef`), every emptyDir a memory-backed mount of the Pod's size, then the Pod's command
 * (tini, then prlimit) and args: Docker's own launcher (security/policy.ts KERNEL_COMMAND), which
 * writes the connection file into /run/kernel and execs ipykernel. ZeroMQ over TCP on the Pod's
 * ports. No cluster runs here; what this proves is that the Pod built by security/pod-spec.ts
 * starts a working kernel from the real image with the same command as Docker (shell, iopub,
 * control and heartbeat answer over TCP), as the sandbox's own uid, with tini as PID 1,
 * RLIMIT_NOFILE enforced by the pod itself and not raisable, the connection file written by the
 * launcher and gone from the kernel's environment, and that the Pod's readiness probe (Docker's
 * health check on TCP) passes only when the kernel listens.
 *
 * Network `none` keeps the test on the container's loopback: the probe runs inside the kernel
 * container (docker exec, as the sandbox uid) and reaches the kernel at 127.0.0.1.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { Writable } from 'node:stream';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import Docker from 'dockerode';
import type { Container, Pod, Secret } from 'kubernetes-types/core/v1.js';
import { kernelNodeKubeletConfig } from '../../security/k8s-manifests.js';
import {
  CONNECTION_FILE_KEY,
  KERNEL_NAMESPACE,
  buildConnectionSecret,
  buildKernelPod,
  tcpConnectionFile,
} from '../../security/pod-spec.js';
import { CONNECTION_ENV, DEFAULT_POLICY, KERNEL_COMMAND } from '../../security/policy.js';
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
import json, os, resource, stat
st = os.lstat("/run/kernel/connection.json")
facts = {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
         "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
         "pid1": open("/proc/1/comm").read().strip(),
         "connection_env": "AIDO_CONNECTION" in os.environ,
         "connection_file": [stat.S_ISREG(st.st_mode), oct(st.st_mode & 0o777), st.st_uid]}
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

/**
 * The container's environment as the kubelet builds it: plain values, and `secretKeyRef` read from
 * the Secret (here the one object the gateway creates with the pod).
 */
function resolveEnv(k: Container, secret: Secret): string[] {
  return (k.env ?? []).map((e) => {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref === undefined) return `${e.name}=${e.value ?? ''}`;
    expect(ref.name, `${e.name} names the kernel's Secret`).to.equal(secret.metadata?.name);
    const value = secret.stringData?.[ref.key];
    if (value === undefined) throw new Error(`the Secret has no key ${ref.key} for ${e.name}`);
    return `${e.name}=${value}`;
  });
}

/** Runs a command in a container as `user`; returns its exit code and output. */
async function execIn(
  docker: Docker,
  container: Docker.Container,
  cmd: string[],
  user: string,
  stdin: string | null,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const exec = await container.exec({
    Cmd: cmd,
    User: user,
    AttachStdin: stdin !== null,
    AttachStdout: true,
    AttachStderr: true,
  });
  const stream = await exec.start({ hijack: true, stdin: stdin !== null });
  const out = new Collector();
  const err = new Collector();
  docker.modem.demuxStream(stream, out, err);
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`timed out after 120 s waiting for ${cmd[0]} in the kernel pod container`));
    }, 120_000);
    stream.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
    stream.once('error', (e: Error) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  // Ending our side of the hijacked connection is the command's end of input.
  if (stdin !== null) stream.end(stdin);
  await done;
  return {
    code: (await exec.inspect()).ExitCode,
    stdout: Buffer.concat(out.chunks).toString('utf8'),
    stderr: Buffer.concat(err.chunks).toString('utf8'),
  };
}

describe('the kernel Pod container, run on Docker as a kubelet would (real image)', function () {
  this.timeout(180_000);
  const docker = new Docker();
  const runId = randomUUID();

  const volumes = new Map<string, string>();

  after(async () => {
    const mine = await docker.listContainers({
      all: true,
      filters: { label: [`${TEST_LABEL}=${runId}`] },
    });
    await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
    await Promise.all([...volumes.values()].map((v) => docker.getVolume(v).remove()));
  });

  /**
   * The pod's emptyDirs as the kubelet makes them: a fresh tmpfs of the volume's size, mode 0777,
   * bind-mounted over the image's directory without copying it (a Docker `Tmpfs` would take the
   * mode of the image's directory). Docker's `local` driver mounts such a volume while a container
   * uses it and drops its content after. `/dev/shm` is Docker's own (`ShmSize`).
   */
  async function createEmptyDirs(pod: Pod): Promise<void> {
    for (const v of pod.spec?.volumes ?? []) {
      expect(v.emptyDir?.medium, `volume ${v.name}`).to.equal('Memory');
      if (v.name === 'dshm') continue;
      const name = `aido-test-pod-${v.name}-${runId}`;
      await docker.createVolume({
        Name: name,
        Driver: 'local',
        DriverOpts: {
          type: 'tmpfs',
          device: 'tmpfs',
          o: `size=${bytes(v.emptyDir?.sizeLimit)},mode=0777`,
        },
        Labels: { [TEST_LABEL]: runId },
      });
      volumes.set(v.name, name);
    }
  }

  /** A container of the pod as Docker create options, with the pod's confinement. */
  function asDocker(
    pod: Pod,
    k: Container,
    secret: Secret,
    run: { Entrypoint: string[]; Cmd: string[] },
  ): Docker.ContainerCreateOptions {
    const spec = pod.spec!;
    const mounts: Docker.MountSettings[] = [];
    let shm = 0;
    for (const m of k.volumeMounts ?? []) {
      const v = spec.volumes!.find((x) => x.name === m.name)!;
      const volume = volumes.get(v.name);
      if (m.mountPath === '/dev/shm') shm = bytes(v.emptyDir?.sizeLimit);
      else if (volume === undefined) throw new Error(`no emptyDir made for volume ${v.name}`);
      else
        mounts.push({
          Type: 'volume',
          Source: volume,
          Target: m.mountPath,
          ReadOnly: false,
          VolumeOptions: { NoCopy: true },
        } as Docker.MountSettings);
    }
    const sc = k.securityContext!;
    return {
      Image: k.image!,
      ...run,
      Env: resolveEnv(k, secret),
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
        // The kubelet's podPidsLimit of the kernel nodes (a Pod spec has no pids field).
        PidsLimit: kernelNodeKubeletConfig(DEFAULT_POLICY.limits).podPidsLimit,
        Mounts: mounts,
        ...(shm > 0 ? { ShmSize: shm } : {}),
        Dns: spec.dnsConfig!.nameservers!,
      },
    };
  }

  it("starts Docker's launcher and ipykernel under tini, reachable over TCP, ready only when it listens", async () => {
    // A uid of the range other than the first, so that the pod is seen to take the input's.
    const uidOfPod = DEFAULT_POLICY.uidRange.first + 4242;
    const objects = buildKernelPod(
      {
        policy: DEFAULT_POLICY,
        image: imageTag(),
        kernelId: runId,
        uid: uidOfPod,
        labels: { 'org.aido.kernel-gateway': '1' },
        env: { KERNEL_ID: runId },
        name: `aido-k-${runId.slice(0, 8)}`,
        hostHasAppArmor: false,
      },
      { namespace: KERNEL_NAMESPACE },
    );
    const spec = objects.pod.spec!;
    expect(spec.initContainers ?? []).to.deep.equal([]);
    expect(spec.containers).to.have.length(1);
    const c = spec.containers[0]!;
    const uid = c.securityContext!.runAsUser!;
    const gid = c.securityContext!.runAsGroup!;
    expect([uid, gid]).to.deep.equal([uidOfPod, uidOfPod]);
    // The same command as a Docker sandbox: tini and prlimit wrap Docker's launcher.
    expect(c.args).to.deep.equal([...KERNEL_COMMAND]);
    expect(c.env?.map((e) => e.name)).to.include(CONNECTION_ENV);
    const secret = buildConnectionSecret(
      objects,
      tcpConnectionFile(randomBytes(32).toString('hex')),
    );
    const probe = c.readinessProbe?.exec?.command;
    if (probe === undefined) throw new Error('the kernel container has no exec readiness probe');
    const user = `${uid}:${gid}`;
    await createEmptyDirs(objects.pod);

    // The readiness probe can fail: in a container of the pod where no kernel listens.
    const idle = await docker.createContainer(
      asDocker(objects.pod, c, secret, { Entrypoint: ['/usr/bin/sleep'], Cmd: ['infinity'] }),
    );
    await idle.start();
    expect((await execIn(docker, idle, probe, user, null)).code, 'probe with no kernel').to.equal(
      1,
    );
    await idle.remove({ force: true });

    const container = await docker.createContainer(
      asDocker(objects.pod, c, secret, { Entrypoint: c.command!, Cmd: c.args! }),
    );
    await container.start();

    const run = await execIn(
      docker,
      container,
      ['python3', '-c', PROBE],
      user,
      secret.stringData![CONNECTION_FILE_KEY]!,
    );
    if (run.code !== 0) {
      const logs = await container.logs({ stdout: true, stderr: true, tail: 40 });
      const state = (await container.inspect()).State;
      expect.fail(
        `the probe failed: ${run.stderr}\nkernel container ${JSON.stringify(state)}:\n${logs.toString('utf8')}`,
      );
    }
    const result = JSON.parse(run.stdout) as {
      status: string;
      transport: string;
      hb: string | null;
      control: string;
      facts: Record<string, unknown>;
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
        // The launcher took the connection file out of the environment and wrote it, 0600, as
        // the sandbox's own file.
        connection_env: false,
        connection_file: [true, '0o600', uid],
      },
    });

    // With the kernel listening, the Pod's readiness probe (Docker's health check) passes.
    const ready = await execIn(docker, container, probe, user, null);
    expect(ready.code, `readiness probe: ${ready.stderr}`).to.equal(0);
  });
});
