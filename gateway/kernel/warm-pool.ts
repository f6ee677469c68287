/**
 * Sandboxes started ahead of demand, each with its kernel already answering, so that a new kernel
 * does not wait for a container and a Python interpreter to boot. A pooled sandbox is handed to
 * exactly one kernel and never returns to the pool; taking one triggers a refill in the background.
 */
import type { Logger } from '../base/logger.js';
import { waitForKernel } from './kernel-probe.js';
import type { KernelRuntime, Sandbox } from '../runtime/runtime.js';

export interface WarmPoolOptions {
  runtime: KernelRuntime;
  size: number;
  startTimeoutMs: number;
  logger: Logger;
  /** How many pooled sandboxes (ready or starting) the kernel limit leaves room for now. */
  room: () => number;
  /** Whether the host's memory budget allows one more sandbox. */
  memoryAllows: () => boolean;
  /** Pause after a failed start before trying again. */
  retryDelayMs?: number;
}

export class WarmPool {
  #ready: Sandbox[] = [];
  #filling = 0;
  #epoch = 0;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #inflight = new Set<Promise<void>>();

  constructor(private readonly opts: WarmPoolOptions) {}

  get size(): number {
    return this.opts.size;
  }

  /** Ready sandboxes waiting for a kernel. */
  get ready(): number {
    return this.#ready.length;
  }

  /** Sandboxes being started for the pool. */
  get filling(): number {
    return this.#filling;
  }

  /** Sandbox ids of every ready sandbox. */
  sandboxIds(): Set<string> {
    return new Set(this.#ready.map((s) => s.id));
  }

  /** Starts filling the pool. */
  start(): void {
    this.#refill();
  }

  /** A ready sandbox, or undefined when the pool is empty (the caller starts one cold). */
  take(): Sandbox | undefined {
    const sandbox = this.#ready.shift();
    this.#refill();
    return sandbox;
  }

  /** Grows the pool towards its size, or shrinks it to the room the kernel limit leaves. */
  rebalance(): void {
    this.#refill();
  }

  #refill(): void {
    if (this.#closed) return;
    const target = Math.max(0, Math.min(this.opts.size, this.opts.room()));
    while (this.#ready.length + this.#filling > target && this.#ready.length > 0) {
      void this.#ready
        .pop()
        ?.destroy()
        .catch(() => undefined);
    }
    if (this.#retryTimer) return;
    while (this.#ready.length + this.#filling < target && this.opts.memoryAllows()) {
      this.#filling++;
      const p: Promise<void> = this.#startOne(this.#epoch).finally(() => {
        this.#filling--;
        this.#inflight.delete(p);
        // The kernel limit may have moved while this one started: trim or grow again.
        this.#refill();
      });
      this.#inflight.add(p);
    }
  }

  async #startOne(epoch: number): Promise<void> {
    let sandbox: Sandbox | undefined;
    try {
      sandbox = await this.opts.runtime.createSandbox(null, {});
      await waitForKernel(sandbox, this.opts.startTimeoutMs);
      await sandbox.enforceLimits();
    } catch (err) {
      await sandbox?.destroy().catch(() => undefined);
      this.#failures++;
      this.opts.logger.warn(
        { err: String(err), failures: this.#failures },
        'warm pool: starting a sandbox failed',
      );
      if (!this.#closed && !this.#retryTimer) {
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = undefined;
          this.#refill();
        }, this.opts.retryDelayMs ?? 5000);
        this.#retryTimer.unref();
      }
      return;
    }
    if (this.#closed || epoch !== this.#epoch) {
      await sandbox.destroy().catch(() => undefined);
      return;
    }
    this.#failures = 0;
    this.#ready.push(sandbox);
    // A pooled sandbox that dies while waiting is dropped, and replaced.
    void sandbox.exited.then(() => {
      const i = this.#ready.indexOf(sandbox);
      if (i >= 0) {
        this.#ready.splice(i, 1);
        void sandbox.destroy().catch(() => undefined);
        this.#refill();
      }
    });
  }

  /**
   * Removes every pooled sandbox (panic, shutdown). With `refill`, the pool fills again
   * afterwards; sandboxes still starting from before are discarded when they come up.
   */
  async drain(opts: { refill: boolean }): Promise<number> {
    this.#epoch++;
    if (!opts.refill) this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const all = this.#ready;
    this.#ready = [];
    await Promise.allSettled(all.map((s) => s.destroy()));
    // On shutdown, wait for starts under way: each removes its own sandbox when it comes up.
    if (!opts.refill) await Promise.allSettled([...this.#inflight]);
    if (opts.refill) this.#refill();
    return all.length;
  }
}
