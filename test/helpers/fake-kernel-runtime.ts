/**
 * A KernelRuntime (gateway/runtime/runtime.ts) whose sandboxes are fake kernels (fake-kernel.ts)
 * on ipc sockets in a temp dir, for the integration tier: the real gateway, no Docker. A sandbox's
 * kernel runs in the test process by default (a kill closes its sockets at once) or, with
 * `processes`, as a child process (a kill is SIGKILL). Exits are reported as Docker reports them:
 * a kill is exit code 137.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  AdoptionScan,
  ConnectionInfo,
  ExecResult,
  KernelRuntime,
  Sandbox,
  SandboxExit,
  SandboxInfo,
} from '../../gateway/runtime/runtime.js';
import { endpointsIn, FakeKernel } from './fake-kernel.js';

const MAIN = fileURLToPath(new URL('./fake-kernel-main.ts', import.meta.url));

/** What kills and exits look like: the exit code Docker reports for a signal is 128 + its number. */
function exitOf(code: number | null, signal: NodeJS.Signals | null): SandboxExit {
  return { exitCode: signal ? 128 + constants.signals[signal] : code, oomKilled: false };
}

export class FakeSandbox implements Sandbox {
  readonly id = `fake-${randomUUID().slice(0, 12)}`;
  readonly uid = null;
  readonly connection: ConnectionInfo;
  readonly exited: Promise<SandboxExit>;
  readonly created = new Date().toISOString();
  #exit!: (e: SandboxExit) => void;
  #running = true;
  #destroyed = false;
  #kernel: FakeKernel | undefined;
  #child: ChildProcess | undefined;

  constructor(
    public kernelId: string | null,
    private readonly dir: string,
  ) {
    this.connection = {
      key: randomBytes(32).toString('hex'),
      signatureScheme: 'hmac-sha256',
      endpoints: endpointsIn(dir),
    };
    this.exited = new Promise((resolve) => (this.#exit = resolve));
    void this.exited.then(() => (this.#running = false));
  }

  /** Whether its kernel still runs (neither exited nor killed). */
  get running(): boolean {
    return this.#running && !this.#destroyed;
  }

  /** The kernel, when it runs in the test process. */
  get kernel(): FakeKernel | undefined {
    return this.#kernel;
  }

  /** The kernel's process id (child-process kernels only). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async boot(inProcess: boolean): Promise<void> {
    if (inProcess) {
      this.#kernel = await FakeKernel.start(this.connection, (code) => {
        this.#kernel?.close();
        this.#exit({ exitCode: code, oomKilled: false });
      });
      return;
    }
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', MAIN, JSON.stringify(this.connection)],
      {
        stdio: ['pipe', 'ignore', 'inherit'],
      },
    );
    this.#child = child;
    child.once('exit', (code, signal) => {
      this.#exit(exitOf(code, signal));
    });
  }

  kill(): Promise<void> {
    if (this.#child) this.#child.kill('SIGKILL');
    else if (this.#running) {
      this.#kernel?.close();
      this.#exit(exitOf(null, 'SIGKILL'));
    }
    return Promise.resolve();
  }

  enforceLimits(): Promise<void> {
    return Promise.resolve();
  }

  putFile(name: string, content: string): Promise<void> {
    writeFileSync(path.join(this.dir, name), content, { flag: 'wx', mode: 0o444 });
    return Promise.resolve();
  }

  hostPath(name: string): string {
    return path.join(this.dir, name);
  }

  exec(): Promise<ExecResult> {
    return Promise.reject(new Error('the fake runtime runs no commands in its sandboxes'));
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    await this.kill();
    await this.exited;
    this.#destroyed = true;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class FakeRuntime implements KernelRuntime {
  /** Every sandbox created, in order (destroyed ones included). */
  readonly sandboxes: FakeSandbox[] = [];

  constructor(private readonly opts: { processes?: boolean } = {}) {}

  /** The sandboxes of `kernelId` whose kernel runs. */
  running(kernelId: string): FakeSandbox[] {
    return this.sandboxes.filter((s) => s.kernelId === kernelId && s.running);
  }

  async createSandbox(kernelId: string | null): Promise<Sandbox> {
    // Short: unix socket paths are limited to 107 bytes.
    const sandbox = new FakeSandbox(kernelId, mkdtempSync('/tmp/aido-fk-'));
    this.sandboxes.push(sandbox);
    await sandbox.boot(this.opts.processes !== true);
    return sandbox;
  }

  reapOrphans(): Promise<number> {
    return Promise.resolve(0);
  }

  bind(sandboxId: string, kernelId: string): Promise<void> {
    const s = this.sandboxes.find((x) => x.id === sandboxId);
    if (s) s.kernelId = kernelId;
    return Promise.resolve();
  }

  async removeSandbox(sandboxId: string): Promise<void> {
    await this.sandboxes.find((x) => x.id === sandboxId)?.destroy();
  }

  exec(): Promise<ExecResult> {
    return Promise.reject(new Error('the fake runtime runs no commands in its sandboxes'));
  }

  adoptable(): Promise<AdoptionScan> {
    return Promise.resolve({ adoptable: [], refused: [] });
  }

  list(): Promise<SandboxInfo[]> {
    return Promise.resolve(
      this.sandboxes
        .filter((s) => s.running)
        .map((s) => ({
          sandboxId: s.id,
          kernelId: s.kernelId,
          created: s.created,
          state: 'running',
          user: 'fake',
          limits: {
            memoryBytes: null,
            memoryAndSwapBytes: null,
            cpus: null,
            cpuShares: null,
            pids: null,
            openFiles: null,
            readOnlyRootfs: false,
            network: 'none',
            capabilitiesDropped: [],
            scratch: {},
          },
          controls: { seccomp: 'none', noNewPrivileges: false, appArmor: null },
          runtime: 'fake',
        })),
    );
  }

  ping(): Promise<boolean> {
    return Promise.resolve(true);
  }
}
