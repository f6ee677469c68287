/**
 * Files in a kernel's /workspace, read and written from the gateway. /workspace is a tmpfs inside
 * the container, which Docker's archive API (docker cp) cannot see, so every operation runs a fixed
 * Python program in the sandbox through `exec`, as the sandbox user and under the sandbox's limits.
 * The user's path reaches that program as an argv element (data, never code or shell); the program
 * resolves it with realpath and refuses anything outside /workspace with a distinct exit code.
 * Paths are also checked here first (no NUL, no `..`, bounded length).
 *
 * The container is the security boundary: the helper can reach nothing the kernel's own code
 * cannot. The confinement keeps the file API to the workspace, and its answers free of the content
 * of anything else in the sandbox (a symlink to /etc, say).
 */
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { z } from 'zod';
import { WORKSPACE_DIR } from '../../security/policy.js';
import { GatewayError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { ExecOptions, ExecResult } from '../runtime/runtime.js';
import { EXIT, HELPER, MAX_ENTRIES, MAX_LISTING_BYTES } from './workspace-helper.js';

export { isTextMime, mimeTypeOf, workspacePath } from './workspace-paths.js';
export { MAX_ENTRIES } from './workspace-helper.js';

/** Runs argv (with stdin) in the sandbox of a container, within the given bounds. */
export type SandboxExec = (
  sandboxId: string,
  argv: string[],
  stdin?: Buffer,
  opts?: ExecOptions,
) => Promise<ExecResult>;

/** The bounds of every workspace operation. */
export interface WorkspaceLimits {
  /** Wall time (ms) of one helper run, a download's streaming included. */
  timeoutMs: number;
  /** Largest file a download (or any read) hands out. */
  maxDownloadBytes: number;
}

/**
 * The most an agent tool (MCP read_file, the chat's read_file) reads of one file: its text goes
 * into a model's context, so more would only be held in memory and clipped.
 */
const AGENT_READ_MAX_BYTES = 10 * 1024 ** 2;
/** Bytes per second a read may not fall below for long (see #run): a slow link, not a stall. */
const MIN_READ_RATE = 1024 ** 2;
/** Bytes of a read's header line (`<size>\n`) at most. */
const MAX_HEADER_BYTES = 32;

/** One entry of a directory listing. */
export interface WorkspaceEntry {
  name: string;
  /** Relative to /workspace. */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  /** ISO 8601. */
  mtime: string;
}

/** A directory listing. */
export interface WorkspaceListing {
  path: string;
  entries: WorkspaceEntry[];
  /** More than {@link MAX_ENTRIES} entries: the rest are left out. */
  truncated: boolean;
}

/** Regular files of /workspace by path: size and mtime (ns, as a string: it exceeds 2^53). */
export interface WorkspaceSnapshot {
  files: Map<string, { size: number; mtimeNs: string }>;
  truncated: boolean;
}

/** Largest time a Date holds, in ms: the kernel can set any mtime (utime), past either end. */
const MAX_DATE_MS = 8.64e15;

function mtimeIso(ns: string): string {
  const ms = Number(BigInt(ns) / 1_000_000n);
  return new Date(Math.max(-MAX_DATE_MS, Math.min(MAX_DATE_MS, ms))).toISOString();
}

// The helper's answers come from inside the sandbox: parsed, not trusted.
const RawEntry = z.object({
  name: z.string(),
  path: z.string(),
  type: z.enum(['file', 'directory', 'symlink', 'other']),
  size: z.number().int().nonnegative(),
  mtime_ns: z.string().regex(/^-?\d{1,25}$/),
});
const RawListing = z.object({
  path: z.string(),
  entries: z.array(RawEntry).max(MAX_ENTRIES),
  truncated: z.boolean(),
});
const RawWritten = RawEntry.extend({ created: z.boolean() });
const RawSnapshot = z.object({
  files: z
    .array(z.tuple([z.string(), z.number().int().nonnegative(), z.string().regex(/^-?\d{1,25}$/)]))
    .max(MAX_ENTRIES),
  truncated: z.boolean(),
});

function toEntry(e: z.infer<typeof RawEntry>): WorkspaceEntry {
  return { name: e.name, path: e.path, type: e.type, size: e.size, mtime: mtimeIso(e.mtime_ns) };
}

function parseOutput<S extends z.ZodType>(schema: S, stdout: Buffer): z.infer<S> {
  let value: unknown;
  try {
    value = JSON.parse(stdout.toString('utf8'));
  } catch (err) {
    throw new GatewayError('SANDBOX_EXEC_FAILED', 'the workspace helper answered garbage', {
      cause: err,
    });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new GatewayError('SANDBOX_EXEC_FAILED', 'the workspace helper answered garbage');
  return parsed.data;
}

/**
 * Splits a read's output: the `<size>\n` line, then the file's bytes, handed on to the destination
 * that `open(size)` returns (with its backpressure). More bytes than announced, or a header that
 * is not one, fail it.
 */
class ReadFraming extends Writable {
  #header: Buffer = Buffer.alloc(0);
  #dest: Writable | undefined;
  #size = 0;
  /** Bytes of the file handed on so far. */
  received = 0;

  constructor(private readonly open: (size: number) => Writable) {
    // A megabyte in flight: fewer pauses of the exec stream, memory still bounded per download.
    super({ highWaterMark: 1024 ** 2 });
    // Errors reach the exec (which kills the helper) and finish(); none may go unhandled later.
    this.on('error', () => undefined);
  }

  /** Settles once every byte handed to it has gone on to the destination. */
  async finish(): Promise<void> {
    this.end();
    await finished(this);
  }

  /** The announced size, once the header line came. */
  get size(): number | undefined {
    return this.#dest ? this.#size : undefined;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    let body = chunk;
    if (!this.#dest) {
      this.#header = Buffer.concat([this.#header, chunk]);
      const nl = this.#header.indexOf(0x0a);
      if (nl < 0) {
        if (this.#header.length > MAX_HEADER_BYTES) done(new Error('bad read header'));
        else done();
        return;
      }
      const line = this.#header.subarray(0, nl).toString('latin1');
      if (!/^\d{1,16}$/.test(line)) {
        done(new Error('bad read header'));
        return;
      }
      this.#size = Number(line);
      body = this.#header.subarray(nl + 1);
      this.#header = Buffer.alloc(0);
      const dest = this.open(this.#size);
      this.#dest = dest;
      // The client went away: fail the exec, which kills the helper.
      dest.once('close', () => {
        if (!dest.writableFinished) this.destroy(new Error('the client went away'));
      });
    }
    this.received += body.length;
    if (this.received > this.#size) {
      done(new Error('the helper sent more bytes than it announced'));
      return;
    }
    if (body.length === 0 || this.#dest.write(body)) done();
    else
      this.#dest.once('drain', () => {
        done();
      });
  }
}

/** Workspace file operations on a kernel's sandbox, by sandbox id. */
export class WorkspaceFiles {
  constructor(
    private readonly exec: SandboxExec,
    private readonly logger: Logger,
    private readonly limits: WorkspaceLimits,
  ) {}

  /** The largest file a download hands out. */
  get maxDownloadBytes(): number {
    return this.limits.maxDownloadBytes;
  }

  /** Wall time one workspace operation may take (before its data streams). */
  get timeoutMs(): number {
    return this.limits.timeoutMs;
  }

  async #run(
    sandboxId: string,
    op: string,
    rel: string,
    opts: { stdin?: Buffer; maxBytes?: number; stdout?: Writable } = {},
  ): Promise<Buffer> {
    const maxBytes = opts.maxBytes ?? this.limits.maxDownloadBytes;
    // A read may stream for longer than the cap, as long as it moves: the cap is then the time
    // without progress, and the whole read may take the cap plus its bytes at MIN_READ_RATE.
    const read = op === 'read';
    const timeoutMs = read
      ? this.limits.timeoutMs + Math.ceil((maxBytes / MIN_READ_RATE) * 1000)
      : this.limits.timeoutMs;
    const seconds = timeoutMs / 1000;
    // A read's output is its header and at most maxBytes; anything else is JSON within the budget.
    const maxOutputBytes = (read ? maxBytes + MAX_HEADER_BYTES : 2 * MAX_LISTING_BYTES) + 64 * 1024;
    let r: ExecResult;
    try {
      // -I: ignore PYTHON* variables and the user site; -S: no site import (faster, less surface).
      r = await this.exec(
        sandboxId,
        ['python3', '-I', '-S', '-c', HELPER, op, rel, String(maxBytes), String(seconds)],
        opts.stdin,
        {
          limits: {
            timeoutMs,
            maxOutputBytes,
            ...(read ? { idleTimeoutMs: this.limits.timeoutMs } : {}),
          },
          ...(opts.stdout ? { stdout: opts.stdout } : {}),
        },
      );
    } catch (err) {
      if (err instanceof GatewayError) {
        if (err.code === 'SANDBOX_EXEC_TIMEOUT' || err.code === 'SANDBOX_EXEC_FAILED')
          this.logger.warn({ op, err: err.message }, 'workspace helper stopped at its bounds');
        throw err;
      }
      this.logger.warn({ err: String(err), op }, 'workspace helper could not run');
      throw new GatewayError(
        'SANDBOX_EXEC_FAILED',
        'could not run the workspace helper in the sandbox (it may be at its process limit)',
        { cause: err },
      );
    }
    if (r.exitCode === 0) return r.stdout;
    const shown = rel === '' ? WORKSPACE_DIR : rel;
    switch (r.exitCode) {
      case EXIT.outside:
        throw new GatewayError('BAD_PATH', `${shown} resolves outside ${WORKSPACE_DIR}`);
      case EXIT.missing:
        throw new GatewayError('FILE_NOT_FOUND', `no such file or directory: ${shown}`);
      case EXIT.isDir:
        throw new GatewayError('BAD_PATH', `${shown} is a directory`);
      case EXIT.notDir:
        throw new GatewayError('BAD_PATH', `${shown} (or a parent of it) is not a directory`);
      case EXIT.noSpace:
        throw new GatewayError(
          'WORKSPACE_FULL',
          `no space left in ${WORKSPACE_DIR} for ${shown} (the workspace is a size-capped tmpfs)`,
        );
      case EXIT.notRegular:
        throw new GatewayError('BAD_PATH', `${shown} is not a regular file`);
      case EXIT.denied:
        throw new GatewayError('BAD_PATH', `permission denied: ${shown}`);
      case EXIT.nameTooLong:
        throw new GatewayError('BAD_PATH', `a name in ${shown} is too long`);
      case EXIT.tooLarge: {
        // The size comes from the sandbox: shown only when it is a plain number.
        const said = r.stderr.subarray(0, 20).toString('latin1');
        const size = /^\d{1,20}$/.test(said) ? `${said} bytes, ` : '';
        throw new GatewayError(
          'PAYLOAD_TOO_LARGE',
          `${shown} is too large to read (${size}the limit is ${maxBytes} bytes)`,
        );
      }
      default:
        // The helper's stderr stays in the log: it may quote the sandbox's files.
        this.logger.warn(
          { op, exitCode: r.exitCode, stderr: r.stderr.subarray(0, 2000).toString() },
          'workspace helper failed',
        );
        throw new GatewayError(
          'SANDBOX_EXEC_FAILED',
          `the workspace helper failed (exit code ${r.exitCode}; the sandbox may be at its process or memory limit)`,
        );
    }
  }

  /** Lists a directory (relative path from {@link workspacePath}). */
  async list(sandboxId: string, rel: string): Promise<WorkspaceListing> {
    const raw = parseOutput(RawListing, await this.#run(sandboxId, 'list', rel));
    return { path: raw.path, entries: raw.entries.map(toEntry), truncated: raw.truncated };
  }

  /**
   * A file for an agent tool (MCP read_file, the chat's read_file): at most AGENT_READ_MAX_BYTES,
   * or the download limit when that is lower. Its text goes into a model's context.
   */
  readForAgent(sandboxId: string, rel: string): Promise<Buffer> {
    return this.read(sandboxId, rel, Math.min(AGENT_READ_MAX_BYTES, this.limits.maxDownloadBytes));
  }

  /**
   * The bytes of a regular file of at most `maxBytes` (default: the download limit); a larger
   * one is refused with PAYLOAD_TOO_LARGE before any of it is read.
   */
  async read(sandboxId: string, rel: string, maxBytes?: number): Promise<Buffer> {
    if (rel === '') throw new GatewayError('BAD_PATH', `${WORKSPACE_DIR} is a directory`);
    const chunks: Buffer[] = [];
    const collect = new Writable({
      write(chunk: Buffer, _enc, done): void {
        chunks.push(chunk);
        done();
      },
    });
    const framing = new ReadFraming(() => collect);
    await this.#run(sandboxId, 'read', rel, {
      stdout: framing,
      ...(maxBytes !== undefined ? { maxBytes } : {}),
    });
    await framing.finish();
    const data = Buffer.concat(chunks);
    if (framing.size === undefined || data.length !== framing.size)
      throw new GatewayError('SANDBOX_EXEC_FAILED', `${rel} changed while it was read`);
    return data;
  }

  /**
   * Streams a regular file to the destination `open(size)` returns, once its size is known (set
   * headers there). Errors before that are thrown as usual; after it, the destination is left
   * short of `size` bytes and the error is thrown too (the caller cuts the response). The caller
   * ends the destination on success.
   */
  async download(sandboxId: string, rel: string, open: (size: number) => Writable): Promise<void> {
    if (rel === '') throw new GatewayError('BAD_PATH', `${WORKSPACE_DIR} is a directory`);
    const framing = new ReadFraming(open);
    await this.#run(sandboxId, 'read', rel, { stdout: framing });
    await framing.finish();
    if (framing.size === undefined || framing.received !== framing.size)
      throw new GatewayError('SANDBOX_EXEC_FAILED', `${rel} changed while it was read`);
  }

  /** Creates or replaces a file (and its parent directories) with `data`. */
  async write(
    sandboxId: string,
    rel: string,
    data: Buffer,
  ): Promise<WorkspaceEntry & { created: boolean }> {
    if (rel === '') throw new GatewayError('BAD_PATH', `${WORKSPACE_DIR} is a directory`);
    const raw = parseOutput(RawWritten, await this.#run(sandboxId, 'write', rel, { stdin: data }));
    return { ...toEntry(raw), created: raw.created };
  }

  /** Removes a file, a symlink (not its target) or a directory with everything in it. */
  async remove(sandboxId: string, rel: string): Promise<void> {
    if (rel === '') throw new GatewayError('BAD_PATH', `${WORKSPACE_DIR} itself cannot be deleted`);
    await this.#run(sandboxId, 'delete', rel);
  }

  /** Every regular file under /workspace with its size and mtime (symlinks not followed). */
  async snapshot(sandboxId: string): Promise<WorkspaceSnapshot> {
    const raw = parseOutput(RawSnapshot, await this.#run(sandboxId, 'snapshot', ''));
    const files = new Map<string, { size: number; mtimeNs: string }>();
    for (const [p, size, mtimeNs] of raw.files) files.set(p, { size, mtimeNs });
    return { files, truncated: raw.truncated };
  }
}

/** The files of `after` that are new or changed since `before`. */
export function changedFiles(
  before: WorkspaceSnapshot,
  after: WorkspaceSnapshot,
): { path: string; size: number; change: 'created' | 'modified' }[] {
  const out: { path: string; size: number; change: 'created' | 'modified' }[] = [];
  for (const [p, now] of after.files) {
    const was = before.files.get(p);
    if (!was) out.push({ path: p, size: now.size, change: 'created' });
    else if (was.size !== now.size || was.mtimeNs !== now.mtimeNs)
      out.push({ path: p, size: now.size, change: 'modified' });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}
