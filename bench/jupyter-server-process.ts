/**
 * Runs Debian's Jupyter Server (`/usr/bin/python3 -m jupyter_server`, 1.x) as the comparison
 * baseline: LOCAL, unsandboxed ipykernels, on a free loopback port with a random token, with its own
 * temporary root, config, data, runtime and IPython directories. `stop()` shuts it down (SIGTERM,
 * then SIGKILL of its process group), kills any kernel process still using its runtime directory,
 * and removes the temporary directory.
 *
 * The python3 kernelspec is the one Jupyter finds (Debian's /usr/share/jupyter/kernels/python3);
 * when there is none, one is written into the temporary data directory with argv
 * ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"].
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

export const JUPYTER_PYTHON = '/usr/bin/python3';

/**
 * A jupyter_server_config.py that turns Nagle's algorithm off on channels WebSockets (Tornado
 * leaves it on, and Jupyter Server 1.x does not call set_nodelay): for the round-trip bench's
 * BENCH_JUPYTER_NODELAY=1, to show what of Jupyter Server's latency is Nagle + delayed ACK.
 */
export const NODELAY_CONFIG = `from jupyter_server.services.kernels.handlers import ZMQChannelsHandler
_open = ZMQChannelsHandler.open
def _open_nodelay(self, *args, **kwargs):
    self.set_nodelay(True)
    return _open(self, *args, **kwargs)
ZMQChannelsHandler.open = _open_nodelay
`;

export interface JupyterServerProcess {
  base: string;
  wsBase: string;
  token: string;
  pid: number;
  /** Jupyter Server's version, e.g. "1.23.3". */
  version: string;
  /** Where the python3 kernelspec came from. */
  kernelspec: string;
  /** The command-line flags it was started with (for the report). */
  args: string[];
  api(p: string, init?: RequestInit): Promise<Response>;
  /** The connection file of a running kernel (tcp on 127.0.0.1). */
  connectionFile(kernelId: string): {
    ip: string;
    shell_port: number;
    key: string;
    transport: string;
  };
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bound then released; Jupyter Server binds it right after). */
async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => {
        resolve(port);
      });
    });
  });
}

function findPython3Kernelspec(env: NodeJS.ProcessEnv): string | undefined {
  const out = execFileSync(
    JUPYTER_PYTHON,
    [
      '-c',
      'import json; from jupyter_client.kernelspec import KernelSpecManager as K; print(json.dumps(K().find_kernel_specs()))',
    ],
    { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const specs = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, string>;
  return specs.python3;
}

/** Processes whose command line mentions `needle` (our kernels carry the runtime dir in theirs). */
function pidsMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes(needle)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startJupyterServer(
  opts: {
    extraArgs?: string[];
    /** Written as jupyter_server_config.py in its (temporary) config directory. */
    configPy?: string;
    startTimeoutMs?: number;
  } = {},
): Promise<JupyterServerProcess> {
  const tmp = mkdtempSync('/tmp/aido-js-');
  const dirs = {
    root: path.join(tmp, 'root'),
    config: path.join(tmp, 'config'),
    data: path.join(tmp, 'data'),
    runtime: path.join(tmp, 'runtime'),
    ipython: path.join(tmp, 'ipython'),
  };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true, mode: 0o700 });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    JUPYTER_CONFIG_DIR: dirs.config,
    JUPYTER_DATA_DIR: dirs.data,
    JUPYTER_RUNTIME_DIR: dirs.runtime,
    IPYTHONDIR: dirs.ipython,
    // Quiets ipykernel's debugger warning about frozen modules on every kernel start.
    PYDEVD_DISABLE_FILE_VALIDATION: '1',
    PYTHONUNBUFFERED: '1',
  };
  let child: ChildProcess | undefined;
  const cleanupTmp = (): void => {
    rmSync(tmp, { recursive: true, force: true });
  };
  try {
    let kernelspec = findPython3Kernelspec(env);
    if (kernelspec === undefined) {
      kernelspec = path.join(dirs.data, 'kernels', 'python3');
      mkdirSync(kernelspec, { recursive: true });
      writeFileSync(
        path.join(kernelspec, 'kernel.json'),
        JSON.stringify({
          argv: [JUPYTER_PYTHON, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
          display_name: 'Python 3 (ipykernel, bench)',
          language: 'python',
        }),
      );
      kernelspec += ' (written by the bench)';
    }
    if (opts.configPy !== undefined)
      writeFileSync(path.join(dirs.config, 'jupyter_server_config.py'), opts.configPy);
    const version = execFileSync(JUPYTER_PYTHON, ['-m', 'jupyter_server', '--version'], {
      env,
      encoding: 'utf8',
    }).trim();
    const port = await freeLoopbackPort();
    const token = randomBytes(16).toString('hex');
    const args = [
      '--ServerApp.ip=127.0.0.1',
      `--ServerApp.port=${port}`,
      '--ServerApp.port_retries=0',
      '--ServerApp.open_browser=False',
      `--ServerApp.root_dir=${dirs.root}`,
      '--ServerApp.allow_root=True',
      ...(opts.extraArgs ?? []),
    ];
    const logPath = path.join(tmp, 'server.log');
    const logFd = openSync(logPath, 'a');
    child = spawn(JUPYTER_PYTHON, ['-m', 'jupyter_server', ...args], {
      // The token goes through the environment, so it is not on the command line.
      env: { ...env, JUPYTER_TOKEN: token },
      stdio: ['ignore', logFd, logFd],
      detached: true, // its own process group, so stop() can end it and nothing else
      cwd: dirs.root,
    });
    closeSync(logFd);
    const proc = child;
    const base = `http://127.0.0.1:${port}`;
    const api = (p: string, init: RequestInit = {}): Promise<Response> =>
      fetch(base + p, {
        ...init,
        headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json' },
      });
    const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(
          `jupyter_server exited (${proc.exitCode ?? proc.signalCode}):\n${readFileSync(logPath, 'utf8').slice(-3000)}`,
        );
      }
      const ok = await api('/api/kernels')
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) break;
      if (Date.now() > deadline) {
        throw new Error(
          `jupyter_server did not answer on ${base}:\n${readFileSync(logPath, 'utf8').slice(-3000)}`,
        );
      }
      await sleep(200);
    }
    return {
      base,
      wsBase: base.replace(/^http/, 'ws'),
      token,
      pid: proc.pid ?? -1,
      version,
      kernelspec,
      args,
      api,
      connectionFile(kernelId) {
        return JSON.parse(
          readFileSync(path.join(dirs.runtime, `kernel-${kernelId}.json`), 'utf8'),
        ) as { ip: string; shell_port: number; key: string; transport: string };
      },
      async stop() {
        await stopChild(proc);
        // Kernels run in their own sessions; any left mentions our runtime dir (-f <file>).
        for (const pid of pidsMentioning(dirs.runtime)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        cleanupTmp();
      },
    };
  } catch (err) {
    if (child) await stopChild(child);
    for (const pid of pidsMentioning(dirs.runtime)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    cleanupTmp();
    throw err;
  }
}

/** SIGTERM to the server's process group; SIGKILL to it after 15 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const pgid = child.pid;
  const exited = new Promise<void>((r) =>
    child.once('exit', () => {
      r();
    }),
  );
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    return;
  }
  // Jupyter Server asks for confirmation on the first SIGINT only; SIGTERM stops it at once.
  const timer = setTimeout(() => {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // gone
    }
  }, 15_000);
  await exited;
  clearTimeout(timer);
}
