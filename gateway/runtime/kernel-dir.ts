/**
 * The host side of a sandbox's kernel directory: the mount point of its own tmpfs volume (see
 * `kernelVolumeOptions` in security/policy.ts). The kernel writes there, so the gateway (root)
 * follows nothing in it: files are created with O_EXCL|O_NOFOLLOW, and the ipc sockets are taken
 * over (owned by root) before any user code runs, after which the sticky, root-owned directory
 * keeps the kernel from renaming, removing or replacing them. ZeroMQ connects by path and follows
 * symlinks; it only ever connects to sockets sealed this way, so there is no window to race.
 */
import { constants, type Stats } from 'node:fs';
import { lchown, lstat, open, statfs } from 'node:fs/promises';
import path from 'node:path';
import { KERNEL_SOCKETS } from '../../security/policy.js';

/** statfs f_type of tmpfs. */
const TMPFS_MAGIC = 0x01021994;
/** Unix socket paths are limited to 107 bytes (sun_path is 108 with its NUL). */
const MAX_SOCKET_PATH = 107;
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** A kernel directory that is not what the gateway made it (not adoptable, not usable). */
export class KernelDirError extends Error {
  override readonly name = 'KernelDirError';
}

/** The host path of the file `name` in the kernel directory `dir` (a plain name, no path). */
export function kernelDirPath(dir: string, name: string): string {
  if (!FILE_NAME.test(name)) throw new KernelDirError(`bad file name ${JSON.stringify(name)}`);
  return path.join(dir, name);
}

/** Throws unless every socket path of `dir` fits a unix socket address. */
export function checkSocketPathLength(dir: string): void {
  for (const name of KERNEL_SOCKETS) {
    if (Buffer.byteLength(path.join(dir, name)) > MAX_SOCKET_PATH) {
      throw new KernelDirError(
        `the kernel directory ${dir} is too long for unix socket paths (${MAX_SOCKET_PATH} bytes): use a shorter Docker data-root`,
      );
    }
  }
}

/** Throws unless `dir` is the mounted tmpfs, root-owned and sticky, as the volume options make it. */
export async function checkKernelDir(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new KernelDirError(`${dir} is not a directory`);
  const fs = await statfs(dir);
  if (fs.type !== TMPFS_MAGIC) {
    throw new KernelDirError(
      `the kernel directory ${dir} is not the sandbox's tmpfs (is the gateway in dockerd's mount namespace?)`,
    );
  }
  if (st.uid !== 0 || (st.mode & 0o1000) === 0)
    throw new KernelDirError(`the kernel directory ${dir} is not root-owned and sticky`);
}

function isSealedSocket(st: Stats): boolean {
  return st.isSocket() && st.uid === 0 && st.gid === 0;
}

/**
 * Takes the kernel's ipc sockets over: each becomes root's (lchown never follows a link), and is
 * then checked to be a socket. From then on the kernel cannot replace them (sticky directory).
 * Must run after the kernel bound them and before any user code runs. Idempotent.
 */
export async function sealKernelDir(dir: string): Promise<void> {
  await checkKernelDir(dir);
  for (const name of KERNEL_SOCKETS) {
    const p = path.join(dir, name);
    await lchown(p, 0, 0);
    if (!isSealedSocket(await lstat(p)))
      throw new KernelDirError(`${name} in the kernel directory is not the kernel's socket`);
  }
}

/** Throws unless the kernel directory was sealed by {@link sealKernelDir} (adoption). */
export async function checkSealed(dir: string): Promise<void> {
  await checkKernelDir(dir);
  for (const name of KERNEL_SOCKETS) {
    const st = await lstat(path.join(dir, name)).catch(() => undefined);
    if (!st || !isSealedSocket(st))
      throw new KernelDirError(`${name} in the kernel directory is not a sealed socket`);
  }
}

/**
 * Creates `name` in the kernel directory with `content`, read-only for the kernel and owned by
 * root (the kernel cannot change or remove it). Fails if the name exists: nothing planted there is
 * ever opened, followed or truncated.
 */
export async function putKernelFile(dir: string, name: string, content: string): Promise<void> {
  const fh = await open(
    kernelDirPath(dir, name),
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o444,
  );
  try {
    await fh.writeFile(content);
  } finally {
    await fh.close();
  }
}
