/**
 * Benchmark: hardened kernel container start, from `docker create` to the first
 * `kernel_info_reply` on the shell channel.
 *
 *   npx tsx bench/container-start.ts          (root: it chowns the kernel's directory to uid 1000)
 *
 * Environment: BENCH_RUNS (default 5), BENCH_IMAGE (default: the tag printed by
 * `bash kernel-image/build.sh --print-tag`), BENCH_TIMEOUT_MS per run (default 60000).
 *
 * Each run makes a fresh directory /var/tmp/aido-bench/<short>/ holding connection.json (transport
 * ipc, ip /run/kernel/k, so the kernel binds /run/kernel/k-1 … k-5), bind-mounts it at /run/kernel
 * in a container with the sandbox's limits, and sends a signed kernel_info_request every 100 ms
 * over ZeroMQ ipc until one is answered. All traffic is over unix sockets; no network address is
 * used. Self-contained on purpose: it does not depend on the project's protocol/ module.
 * Prints a table and one JSON line {"bench":"container-start", ...}.
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import * as zmq from 'zeromq';

const SANDBOX_UID = 1000;
const SANDBOX_GID = 1000;
const BENCH_ROOT = '/var/tmp/aido-bench';
const POLL_MS = 100;
const DELIMITER = '<IDS|MSG>';
const repoRoot = dirname(dirname(fileURLToPath(import.meta.url)));

interface RunResult {
  createMs: number;
  startMs: number;
  readyMs: number;
  requestsSent: number;
}

interface Summary {
  min: number;
  median: number;
  max: number;
}

function positiveIntFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function imageTag(): string {
  const fromEnv = process.env.BENCH_IMAGE;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return execFileSync('bash', [join(repoRoot, 'kernel-image/build.sh'), '--print-tag'], {
    encoding: 'utf8',
  }).trim();
}

function sign(key: string, parts: readonly Buffer[]): string {
  const hmac = createHmac('sha256', key);
  for (const part of parts) hmac.update(part);
  return hmac.digest('hex');
}

function kernelInfoRequest(key: string, session: string): { msgId: string; frames: Buffer[] } {
  const msgId = randomUUID();
  const header = {
    msg_id: msgId,
    msg_type: 'kernel_info_request',
    username: 'bench',
    session,
    date: new Date().toISOString(),
    version: '5.3',
  };
  const body = [header, {}, {}, {}].map((part) => Buffer.from(JSON.stringify(part)));
  return { msgId, frames: [Buffer.from(DELIMITER), Buffer.from(sign(key, body)), ...body] };
}

/** The parent msg_id of a verified kernel_info_reply, or undefined for anything else. */
function kernelInfoReplyParent(key: string, frames: readonly Buffer[]): string | undefined {
  const at = frames.findIndex((frame) => frame.toString() === DELIMITER);
  if (at < 0 || frames.length < at + 6) return undefined;
  const signature = frames[at + 1]!;
  const body = frames.slice(at + 2, at + 6);
  const expected = Buffer.from(sign(key, body));
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
    throw new Error('kernel_info_reply carries a bad signature');
  }
  const header: unknown = JSON.parse(body[0]!.toString());
  const parent: unknown = JSON.parse(body[1]!.toString());
  if (
    typeof header !== 'object' ||
    header === null ||
    typeof parent !== 'object' ||
    parent === null
  ) {
    return undefined;
  }
  if (!('msg_type' in header) || header.msg_type !== 'kernel_info_reply') return undefined;
  return 'msg_id' in parent && typeof parent.msg_id === 'string' ? parent.msg_id : undefined;
}

async function waitForKernelInfo(dir: string, key: string, timeoutMs: number): Promise<number> {
  const dealer = new zmq.Dealer({ linger: 0, reconnectInterval: POLL_MS });
  dealer.connect(`ipc://${join(dir, 'k-1')}`);
  const session = randomUUID();
  const sent = new Set<string>();
  const answered = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  try {
    const reply = (async () => {
      for await (const frames of dealer) {
        const parent = kernelInfoReplyParent(key, frames);
        if (parent !== undefined && sent.has(parent)) return;
      }
      throw new Error('shell socket closed before a kernel_info_reply arrived');
    })();
    const poll = (async () => {
      while (!answered.signal.aborted) {
        const request = kernelInfoRequest(key, session);
        sent.add(request.msgId);
        await dealer.send(request.frames);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    })();
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`no kernel_info_reply within ${timeoutMs} ms on ${dir}/k-1`));
      }, timeoutMs);
    });
    await Promise.race([reply, deadline]);
    answered.abort();
    await poll;
    return sent.size;
  } finally {
    answered.abort();
    clearTimeout(timer);
    dealer.close();
  }
}

async function runOnce(docker: Docker, image: string, timeoutMs: number): Promise<RunResult> {
  const short = randomBytes(4).toString('hex');
  const dir = join(BENCH_ROOT, short);
  const key = randomBytes(32).toString('hex');
  await mkdir(dir, { mode: 0o700 });
  let container: Docker.Container | undefined;
  try {
    await chown(dir, SANDBOX_UID, SANDBOX_GID);
    const connection = {
      transport: 'ipc',
      ip: '/run/kernel/k',
      shell_port: 1,
      iopub_port: 2,
      stdin_port: 3,
      control_port: 4,
      hb_port: 5,
      key,
      signature_scheme: 'hmac-sha256',
      kernel_name: 'python3',
    };
    const file = join(dir, 'connection.json');
    await writeFile(file, JSON.stringify(connection, null, 2), { mode: 0o600 });
    await chown(file, SANDBOX_UID, SANDBOX_GID);

    const t0 = performance.now();
    container = await docker.createContainer({
      name: `aido-bench-${short}`,
      Image: image,
      User: `${SANDBOX_UID}:${SANDBOX_GID}`,
      Labels: { 'org.aido.bench': 'container-start' },
      HostConfig: {
        NetworkMode: 'none',
        ReadonlyRootfs: true,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        Tmpfs: {
          '/tmp': 'rw,nosuid,nodev,size=64m,mode=1777',
          '/workspace': 'rw,nosuid,nodev,size=100m,uid=1000,gid=1000,mode=0700',
        },
        Memory: 512 * 1024 * 1024,
        MemorySwap: 512 * 1024 * 1024,
        PidsLimit: 50,
        NanoCpus: 0.5e9,
        Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 1024 }],
        Binds: [`${dir}:/run/kernel`],
      },
    });
    const t1 = performance.now();
    const ready = waitForKernelInfo(dir, key, timeoutMs);
    try {
      await container.start();
    } catch (error) {
      ready.catch(() => undefined);
      throw error;
    }
    const t2 = performance.now();
    const requestsSent = await ready;
    const t3 = performance.now();
    return { createMs: t1 - t0, startMs: t2 - t1, readyMs: t3 - t0, requestsSent };
  } finally {
    if (container !== undefined) await container.remove({ force: true });
    await rm(dir, { recursive: true, force: true });
  }
}

function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { min: sorted[0]!, median, max: sorted[sorted.length - 1]! };
}

const round = (ms: number): number => Math.round(ms);
const cell = (value: number | string, width = 10): string => String(value).padStart(width);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error('run as root: the kernel directory must be chowned to uid 1000');
  }
  const runs = positiveIntFromEnv('BENCH_RUNS', 5);
  const timeoutMs = positiveIntFromEnv('BENCH_TIMEOUT_MS', 60_000);
  const image = imageTag();
  const docker = new Docker({ socketPath: '/var/run/docker.sock' });
  try {
    await docker.getImage(image).inspect();
  } catch {
    throw new Error(`image ${image} not found: build it with 'bash kernel-image/build.sh'`);
  }
  await mkdir(BENCH_ROOT, { recursive: true, mode: 0o755 });

  const results: RunResult[] = [];
  for (let i = 0; i < runs; i++) results.push(await runOnce(docker, image, timeoutMs));
  await rm(BENCH_ROOT, { recursive: true, force: true });

  const create = summarize(results.map((r) => r.createMs));
  const start = summarize(results.map((r) => r.startMs));
  const ready = summarize(results.map((r) => r.readyMs));
  const lines = [
    `container create -> kernel_info_reply  (${image}, 0.5 CPU, 512 MB, ipc, ${runs} runs)`,
    `${cell('run', 7)}${cell('create ms')}${cell('start ms')}${cell('ready ms')}${cell('requests')}`,
    ...results.map(
      (r, i) =>
        `${cell(i + 1, 7)}${cell(round(r.createMs))}${cell(round(r.startMs))}${cell(round(r.readyMs))}${cell(r.requestsSent)}`,
    ),
    ...(['min', 'median', 'max'] as const).map(
      (stat) =>
        `${cell(stat, 7)}${cell(round(create[stat]))}${cell(round(start[stat]))}${cell(round(ready[stat]))}`,
    ),
  ];
  console.log(lines.join('\n'));
  console.log(
    JSON.stringify({
      bench: 'container-start',
      image,
      runs,
      nano_cpus: 0.5e9,
      memory_bytes: 512 * 1024 * 1024,
      transport: 'ipc',
      poll_ms: POLL_MS,
      create_ms: { min: round(create.min), median: round(create.median), max: round(create.max) },
      start_ms: { min: round(start.min), median: round(start.median), max: round(start.max) },
      ready_ms: { min: round(ready.min), median: round(ready.median), max: round(ready.max) },
      samples_ready_ms: results.map((r) => round(r.readyMs)),
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
