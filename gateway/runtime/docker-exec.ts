/**
 * Commands run inside a sandbox through Docker's exec API, bounded. Whatever such a process writes
 * comes from a place the kernel controls: it runs as the kernel's own uid, so kernel code can stop
 * it (SIGSTOP), feed it a file of any apparent size, or keep it busy. Every exec therefore has a cap
 * on the bytes read back and a wall-time cap; past either, our end of the connection is dropped,
 * the process is killed and the exec fails with a clear error, whatever state the process is in.
 *
 * Killing it from outside: Docker's exec inspect gives the process's host pid. When the gateway
 * shares the host's pid namespace (it runs on the host, the usual deployment) and that pid is
 * verifiably in this container's cgroup, it is SIGKILLed from here: a stopped process dies on
 * SIGKILL, and nothing the kernel does inside the sandbox can stop it. Otherwise (the gateway in a
 * container of its own) a second, short exec as the same uid kills every process carrying this
 * exec's random marker in its environment; the kernel could stop that one too, but then only its
 * own sandbox keeps a stopped process (counted against its own pids limit), and the request that
 * started it has already ended.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Duplex, Writable } from 'node:stream';
import type Docker from 'dockerode';
import { GatewayError } from '../base/errors.js';
import type { ExecLimits, ExecOptions, ExecResult } from './runtime.js';

/** Limits of an exec that names none: generous for the gateway's helpers, still bounded. */
export const DEFAULT_EXEC_LIMITS: ExecLimits = {
  maxOutputBytes: 16 * 1024 ** 2,
  timeoutMs: 30_000,
};

/** Wall time of the in-sandbox killer (the fallback when the host pid cannot be used). */
const KILLER_TIMEOUT_MS = 5000;

/** The environment variable that marks one exec's process (and whatever it forks). */
const MARK_VAR = 'AIDO_EXEC_MARK';

/** Kills every process of this uid whose environment carries the marker given as argv[1]. */
const KILLER = String.raw`
import os, sys
mark = (sys.argv[1] + '=' + sys.argv[2]).encode()
me = os.getpid()
for p in os.listdir('/proc'):
    if not p.isdigit() or int(p) in (1, me): continue
    try:
        with open('/proc/%s/environ' % p, 'rb') as f:
            if mark in f.read(1 << 20).split(b'\0'): os.kill(int(p), 9)
    except OSError:
        pass
`;

/** How an exec is run: as whom, where, and its bounds. */
export interface ExecSpec extends ExecOptions {
  /** `uid:gid` the process runs as; absent: the container's own user (the sandbox's uid). */
  user?: string;
  workingDir: string;
}

/** Why a bounded exec was stopped from outside. */
type Stop =
  { kind: 'timeout' } | { kind: 'idle' } | { kind: 'output' } | { kind: 'sink'; err: unknown };

/** Settles when the hijacked stream ends; rejects on its error. */
function ended(stream: Duplex): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    stream.once('end', resolve);
    stream.once('close', resolve);
    stream.once('error', reject);
  });
}

/**
 * Splits Docker's multiplexed exec stream (8-byte frame headers: stream type, 3 zero bytes, a
 * big-endian payload length) into stdout and stderr, counting every payload byte against the cap.
 * Our own demuxer rather than dockerode's: it counts before it keeps, and it honours the sink's
 * backpressure (dockerode's ignores it).
 */
class Demux {
  /** The frame header being read (8 bytes), or undefined while a payload is. */
  #header: Buffer | undefined = Buffer.alloc(0);
  /** The stream (1 stdout, 2 stderr) and bytes left of the payload being read. */
  #type = 1;
  #left = 0;
  #total = 0;
  readonly stdout: Buffer[] = [];
  readonly stderr: Buffer[] = [];

  constructor(
    private readonly maxBytes: number,
    private readonly sink: Writable | undefined,
  ) {}

  /** Takes one chunk; returns 'over' past the cap, 'full' when the sink asks us to wait. */
  push(chunk: Buffer): 'ok' | 'over' | 'full' {
    let full = false;
    let rest = chunk;
    while (rest.length > 0) {
      if (this.#header) {
        const need = 8 - this.#header.length;
        this.#header = Buffer.concat([this.#header, rest.subarray(0, need)]);
        rest = rest.subarray(need);
        if (this.#header.length < 8) break;
        this.#type = this.#header[0] ?? 1;
        this.#left = this.#header.readUInt32BE(4);
        // Counted on the header, before any payload is kept: a frame announcing 4 GB fails now.
        if (this.#total + this.#left > this.maxBytes) return 'over';
        this.#total += this.#left;
        this.#header = this.#left === 0 ? Buffer.alloc(0) : undefined;
        continue;
      }
      // Payloads are handed on as they come, not once whole.
      const payload = rest.subarray(0, this.#left);
      rest = rest.subarray(payload.length);
      this.#left -= payload.length;
      if (this.#left === 0) this.#header = Buffer.alloc(0);
      if (this.#type === 2) this.stderr.push(payload);
      else if (this.sink) full = !this.sink.write(payload) || full;
      else this.stdout.push(payload);
    }
    return full ? 'full' : 'ok';
  }
}

/** Whether host pid `pid` is a process of container `id` (its cgroup path names the container). */
async function inContainer(pid: number, id: string): Promise<boolean> {
  const cgroup = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  return cgroup.includes(id);
}

/** SIGKILLs what is left of an exec (see the module comment for the two ways). */
async function killExec(
  container: Docker.Container,
  exec: Docker.Exec,
  spec: ExecSpec,
  mark: string,
): Promise<'host' | 'sandbox' | 'gone' | 'failed'> {
  const info = await exec.inspect().catch(() => undefined);
  if (info && !info.Running) return 'gone';
  const pid = info?.Pid ?? 0;
  if (pid > 1 && (await inContainer(pid, container.id))) {
    try {
      process.kill(pid, 'SIGKILL');
      return 'host';
    } catch {
      // gone meanwhile, or not ours to signal: the sandbox-side killer below
    }
  }
  try {
    const r = await execIn(
      container,
      ['python3', '-I', '-S', '-c', KILLER, MARK_VAR, mark],
      undefined,
      {
        ...(spec.user === undefined ? {} : { user: spec.user }),
        workingDir: '/',
        limits: { maxOutputBytes: 64 * 1024, timeoutMs: KILLER_TIMEOUT_MS },
        noKill: true,
      },
    );
    return r.exitCode === 0 ? 'sandbox' : 'failed';
  } catch {
    return 'failed';
  }
}

/**
 * Runs argv in a container as `spec.user`, feeding `stdin` and returning stdout and stderr
 * demultiplexed (stdout goes to `spec.stdout` instead when given), within `spec.limits`. Past a
 * limit, or when the sink fails, the process is killed and a {@link GatewayError} is thrown:
 * SANDBOX_EXEC_TIMEOUT for the wall time, SANDBOX_EXEC_FAILED for the output cap.
 */
export async function execIn(
  container: Docker.Container,
  argv: string[],
  stdin: Buffer | undefined,
  spec: ExecSpec & { noKill?: boolean },
): Promise<ExecResult> {
  const limits = { ...DEFAULT_EXEC_LIMITS, ...spec.limits };
  const mark = randomBytes(12).toString('hex');
  let stop: (s: Stop) => void = () => undefined;
  const stopped = new Promise<Stop>((resolve) => {
    stop = resolve;
  });
  const timer = setTimeout(() => {
    stop({ kind: 'timeout' });
  }, limits.timeoutMs);
  // Without output for idleTimeoutMs (stopped, or a client that stopped reading): stopped too.
  let idle: NodeJS.Timeout | undefined;
  const stillGoing = (): void => {
    const ms = limits.idleTimeoutMs;
    if (ms === undefined) return;
    clearTimeout(idle);
    idle = setTimeout(() => {
      stop({ kind: 'idle' });
    }, ms);
  };
  stillGoing();
  let exec: Docker.Exec | undefined;
  let stream: Duplex | undefined;
  try {
    const run = async (): Promise<ExecResult> => {
      try {
        exec = await container.exec({
          Cmd: argv,
          ...(spec.user === undefined ? {} : { User: spec.user }),
          WorkingDir: spec.workingDir,
          Env: [`${MARK_VAR}=${mark}`],
          AttachStdin: stdin !== undefined,
          AttachStdout: true,
          AttachStderr: true,
          Tty: false,
        });
      } catch (err) {
        const code = (err as { statusCode?: number }).statusCode;
        if (code === 404 || code === 409)
          throw new GatewayError('KERNEL_DEAD', 'the sandbox is not running', { cause: err });
        throw err;
      }
      const s = await exec.start({ hijack: true, stdin: stdin !== undefined });
      stream = s;
      const demux = new Demux(limits.maxOutputBytes, spec.stdout);
      const sink = spec.stdout;
      const onSinkError = (err: unknown): void => {
        stop({ kind: 'sink', err });
      };
      sink?.on('error', onSinkError);
      sink?.on('close', () => {
        onSinkError(new Error('the destination closed'));
      });
      s.on('data', (chunk: Buffer) => {
        stillGoing();
        const verdict = demux.push(chunk);
        if (verdict === 'over') stop({ kind: 'output' });
        else if (verdict === 'full' && sink) {
          s.pause();
          sink.once('drain', () => {
            stillGoing();
            s.resume();
          });
        }
      });
      const done = ended(s);
      // Ending our side of the hijacked connection is the process's end of input.
      if (stdin !== undefined) s.end(stdin);
      await done;
      sink?.off('error', onSinkError);
      const info = await exec.inspect();
      return {
        exitCode: info.ExitCode ?? -1,
        stdout: Buffer.concat(demux.stdout),
        stderr: Buffer.concat(demux.stderr),
      };
    };
    const running = run();
    // Once stopped from outside, the run's own end (a destroyed stream) is of no interest.
    running.catch(() => undefined);
    const outcome = await Promise.race([running, stopped]);
    if ('exitCode' in outcome) return outcome;
    // Stopped from outside: drop the connection, kill the process, say why.
    stream?.destroy();
    if (exec && !spec.noKill) await killExec(container, exec, spec, mark);
    if (outcome.kind === 'timeout')
      throw new GatewayError(
        'SANDBOX_EXEC_TIMEOUT',
        `the sandbox helper did not finish within ${limits.timeoutMs / 1000} s (it was stopped or too slow) and was killed`,
      );
    if (outcome.kind === 'idle')
      throw new GatewayError(
        'SANDBOX_EXEC_TIMEOUT',
        `the sandbox helper made no progress for ${(limits.idleTimeoutMs ?? 0) / 1000} s (it was stopped, or the client stopped reading) and was killed`,
      );
    if (outcome.kind === 'output')
      throw new GatewayError(
        'SANDBOX_EXEC_FAILED',
        `the sandbox helper wrote more than ${limits.maxOutputBytes} bytes and was killed`,
      );
    throw new GatewayError('SANDBOX_EXEC_FAILED', 'the destination of the helper output failed', {
      cause: outcome.err,
    });
  } finally {
    clearTimeout(timer);
    clearTimeout(idle);
  }
}
