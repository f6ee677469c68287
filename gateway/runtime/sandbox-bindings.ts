/**
 * Which kernel a sandbox serves, and the environment it was given: gateway-owned state, one
 * root-only file per container under `<state-dir>/sandboxes/`, outside every sandbox mount. A
 * gateway restarted after a crash reads these, never anything a sandbox can write.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

/** What the gateway recorded when a sandbox was bound to a kernel. */
export interface SandboxBinding {
  kernelId: string;
  /** The kernel's allow-listed environment (the registry filters it again on adoption). */
  env: Record<string, string>;
}

/** A record larger than this is not one the gateway wrote (env values are capped at 4 KiB). */
const MAX_RECORD_BYTES = 1024 * 1024;
const CONTAINER_ID = /^[0-9a-f]{64}$/;

function parseBinding(text: string): SandboxBinding {
  const v: unknown = JSON.parse(text);
  if (typeof v !== 'object' || v === null) throw new Error('not an object');
  const { kernelId, env } = v as { kernelId?: unknown; env?: unknown };
  if (typeof kernelId !== 'string') throw new Error('kernelId is not a string');
  if (typeof env !== 'object' || env === null || Array.isArray(env))
    throw new Error('env is not an object');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(env)) {
    if (typeof val !== 'string') throw new Error(`env ${k} is not a string`);
    out[k] = val;
  }
  return { kernelId, env: out };
}

/** The binding records of one state dir. */
export class SandboxBindings {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'sandboxes');
  }

  #file(containerId: string): string {
    if (!CONTAINER_ID.test(containerId)) throw new Error(`bad container id ${containerId}`);
    return path.join(this.dir, `${containerId}.json`);
  }

  /** Records (atomically: a fresh temporary file renamed into place) that a container serves a kernel. */
  async write(containerId: string, binding: SandboxBinding): Promise<void> {
    const file = this.#file(containerId);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(this.dir, `.${containerId}.${randomBytes(6).toString('hex')}`);
    const fh = await open(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    try {
      await fh.writeFile(JSON.stringify(binding));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  }

  /**
   * The record of a container: undefined when there is none; throws when it cannot be trusted
   * (not a regular file, too large, not the shape the gateway writes). Never follows a symlink
   * and never blocks on a FIFO.
   */
  async read(containerId: string): Promise<SandboxBinding | undefined> {
    let fh;
    try {
      fh = await open(
        this.#file(containerId),
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error('the binding record is not a regular file');
      if (st.size > MAX_RECORD_BYTES) throw new Error(`the binding record is ${st.size} bytes`);
      const buf = Buffer.alloc(st.size);
      const { bytesRead } = await fh.read(buf, 0, st.size, 0);
      return parseBinding(buf.subarray(0, bytesRead).toString('utf8'));
    } finally {
      await fh.close();
    }
  }

  /** Forgets a container's record (no record: nothing to do). */
  async remove(containerId: string): Promise<void> {
    await unlink(this.#file(containerId)).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    });
  }

  /** Container ids that have a record (for clean-up). */
  async containerIds(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -'.json'.length))
      .filter((id) => CONTAINER_ID.test(id));
  }
}
