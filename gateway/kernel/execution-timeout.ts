/**
 * The one KeyboardInterrupt → ExecutionTimeout rewrite. A deadline (the kernel's watchdog, or an
 * agent request's timeout_s) ends an execution with an interrupt, which the kernel reports as
 * KeyboardInterrupt; the client is told what really happened. Used by the kernel's bridge and by
 * the agent API's collector.
 */

/** The ename a client sees for an execution a deadline ended. */
export const EXECUTION_TIMEOUT = 'ExecutionTimeout';

/** The evalue for the kernel's execution deadline (AIDO_EXEC_TIMEOUT). */
export function deadlineTimeoutText(limitMs: number): string {
  return `Execution exceeded the ${limitMs / 1000} s limit and was interrupted.`;
}

/** The evalue for an agent request's own timeout_s. */
export function requestTimeoutText(limitMs: number): string {
  return `Execution exceeded the request's timeout_s (${limitMs / 1000} s) and was interrupted.`;
}

/**
 * An error output's or an execute_reply's content, rewritten to say the deadline ended the
 * execution. `traceback: 'replace'` swaps the kernel's KeyboardInterrupt traceback for one line
 * naming the timeout (the bridge); `'keep'` leaves it (the agent API shows where the code was
 * interrupted). A reply also gets `status: 'error'`.
 */
export function asExecutionTimeout(
  content: Record<string, unknown>,
  evalue: string,
  opts: { traceback: 'replace' | 'keep'; reply?: boolean },
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...content };
  if (opts.reply) out.status = 'error';
  out.ename = EXECUTION_TIMEOUT;
  out.evalue = evalue;
  if (opts.traceback === 'replace') out.traceback = [`${EXECUTION_TIMEOUT}: ${evalue}`];
  return out;
}
