/**
 * One live gateway per state dir: an flock(2) on `<state-dir>/gateway.lock`, held by a small
 * `flock(1)` child whose only input is a pipe from the gateway. The kernel drops the lock when the
 * holder exits, and the holder exits as soon as that pipe closes, which happens however the
 * gateway ends (SIGKILL included), so a crashed gateway's lock is never stale. flock works across
 * mount and pid namespaces (a gateway in a container and one on the host share the file's inode).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { constants } from 'node:fs';
import { open, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** flock(1)'s exit code when the lock is held (`-E`). */
const HELD = 75;
/** How long to wait for a holder that is exiting (a gateway killed a moment ago). */
const WAIT_S = 2;
const MAX_OWNER_BYTES = 4096;

/** The state dir is held by another live gateway (or cannot be locked): the gateway must not start. */
export class StateDirLockedError extends Error {
  override readonly name = 'StateDirLockedError';
}

/** Who holds a state dir (shown when a second gateway is refused). */
interface Owner {
  pid: number;
  instance: string;
  started: string;
}

async function readOwner(file: string): Promise<string> {
  try {
    const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const buf = Buffer.alloc(MAX_OWNER_BYTES);
      const { bytesRead } = await fh.read(buf, 0, MAX_OWNER_BYTES, 0);
      const o = JSON.parse(buf.subarray(0, bytesRead).toString('utf8')) as Partial<Owner>;
      return ` (pid ${Number(o.pid)}, instance ${String(o.instance)}, since ${String(o.started)})`;
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

/** A held state-dir lock; {@link release} (or the gateway's exit) lets it go. */
export class StateDirLock {
  #released = false;

  private constructor(private readonly holder: ChildProcessWithoutNullStreams) {}

  /**
   * Takes the lock of `stateDir`, or throws {@link StateDirLockedError} naming the live holder. Waits up to
   * two seconds for a holder that is exiting.
   */
  static async acquire(stateDir: string, instance: string): Promise<StateDirLock> {
    const lockFile = path.join(stateDir, 'gateway.lock');
    const ownerFile = path.join(stateDir, 'gateway.owner');
    // detached: its own process group, so a Ctrl-C at the terminal does not drop the lock while
    // the gateway is still removing its sandboxes.
    const holder = spawn(
      'flock',
      ['-w', String(WAIT_S), '-E', String(HELD), lockFile, 'sh', '-c', 'echo locked; exec cat'],
      { stdio: ['pipe', 'pipe', 'pipe'], detached: true },
    );
    const outcome = await new Promise<'locked' | 'held' | Error>((resolve) => {
      let out = '';
      holder.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('locked\n')) resolve('locked');
      });
      holder.once('error', (err) => {
        resolve(new Error(`cannot run flock(1) to lock the state dir: ${err.message}`));
      });
      holder.once('exit', (code) => {
        resolve(code === HELD ? 'held' : new Error(`flock(1) exited with ${code}`));
      });
    });
    if (outcome !== 'locked') {
      holder.kill('SIGKILL');
      if (outcome === 'held') {
        throw new StateDirLockedError(
          `another gateway is running on the state dir ${stateDir}${await readOwner(ownerFile)}: stop it, or give this one its own AIDO_STATE_DIR`,
        );
      }
      throw new StateDirLockedError(outcome.message);
    }
    // The holder must never keep the gateway's event loop alive.
    holder.unref();
    holder.stdout.destroy();
    (holder.stdin as unknown as { unref?: () => void }).unref?.();
    (holder.stderr as unknown as { unref?: () => void }).unref?.();
    const owner: Owner = { pid: process.pid, instance, started: new Date().toISOString() };
    const tmp = `${ownerFile}.${process.pid}`;
    await writeFile(tmp, JSON.stringify(owner), { mode: 0o600, flag: 'w' });
    await rename(tmp, ownerFile);
    return new StateDirLock(holder);
  }

  /** Lets the lock go (closing the holder's input ends it). Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.holder.stdin.end();
    this.holder.kill('SIGTERM');
  }
}
