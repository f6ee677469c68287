/** The gateway as a child process (`gateway/cli.ts`), for tests that SIGKILL and restart it. */
import { spawn, type ChildProcess } from 'node:child_process';

export interface GatewayProcess {
  child: ChildProcess;
  base: string;
}

function spawnGateway(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'gateway/cli.ts'], {
    env: { ...process.env, AIDO_PORT: '0', AIDO_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Starts a gateway; resolves once it listens, rejects if it exits first or takes too long. */
export function startGatewayProcess(
  env: Record<string, string>,
  timeoutMs = 90_000,
): Promise<GatewayProcess> {
  const child = spawnGateway(env);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`timed out after ${timeoutMs} ms waiting for the gateway to listen: ${out}`),
      );
    }, timeoutMs);
    const take = (d: Buffer): void => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)\n/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve({ child, base: m[1] });
      }
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited early (${code}): ${out}`));
    });
  });
}

/** Runs a gateway that is expected to refuse to start: resolves with its exit code and output. */
export function runGatewayToExit(
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ code: number | null; out: string }> {
  const child = spawnGateway(env);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out after ${timeoutMs} ms waiting for the gateway to exit: ${out}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Stops a gateway process with SIGTERM (its clean shutdown) if it still runs. */
export async function stopGatewayProcess(gw: GatewayProcess | undefined): Promise<void> {
  if (!gw || gw.child.exitCode !== null || gw.child.signalCode !== null) return;
  const exited = new Promise((r) => gw.child.once('exit', r));
  gw.child.kill('SIGTERM');
  await exited;
}

/** SIGKILLs a gateway process and waits until it is gone. */
export async function killGatewayProcess(gw: GatewayProcess | undefined): Promise<void> {
  if (!gw || gw.child.exitCode !== null || gw.child.signalCode !== null) return;
  const exited = new Promise((r) => gw.child.once('exit', r));
  gw.child.kill('SIGKILL');
  await exited;
}
