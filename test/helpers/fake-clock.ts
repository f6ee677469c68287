/** A manual clock for unit tests of timer-driven units: timers fire only when the test advances. */
import type { Timers } from '../../gateway/base/deadline.js';

/** Manual clock: timers fire only when the test advances time. */
export class FakeClock implements Timers {
  constructor(public now = 0) {}

  #next = 1;
  #timers = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  get pending(): number {
    return this.#timers.size;
  }
  /** Advances in steps of at most `step` ms, firing due timers and letting promises settle. */
  async advance(ms: number, step = 10): Promise<void> {
    const end = this.now + ms;
    while (this.now < end) {
      this.now = Math.min(end, this.now + step);
      for (const [id, t] of [...this.#timers].sort((a, b) => a[1].at - b[1].at)) {
        if (t.at <= this.now) {
          this.#timers.delete(id);
          t.fn();
        }
      }
      for (let i = 0; i < 10; i++) await Promise.resolve();
    }
  }
}
