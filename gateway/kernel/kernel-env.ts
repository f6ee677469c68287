/**
 * The environment a client may pass into a kernel: KERNEL_* and configured names only, as data.
 * Jupyter Server sends its whole environment (PATH, HOME, KERNEL_WORKING_DIR of the client's
 * machine, passed as data: the sandbox always starts in /workspace): everything else is ignored, and names that would change how the sandbox's Python
 * starts are never passed, even when allow-listed.
 */
import { GatewayError } from '../base/errors.js';

const NEVER =
  /^(PATH|HOME|SHELL|USER|PWD|LD_.*|PYTHON(HOME|PATH|STARTUP|USERBASE|EXECUTABLE)|IPYTHONDIR|MPLCONFIGDIR|JPY_.*|JUPYTER_.*|AIDO_.*)$/;
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const MAX_VALUE = 4096;

/** Filters a start request's `env`; throws BAD_REQUEST when it is not an object of strings. */
export function kernelEnvFrom(env: unknown, allowlist: readonly string[]): Record<string, string> {
  if (env === undefined || env === null) return {};
  if (typeof env !== 'object' || Array.isArray(env)) {
    throw new GatewayError('BAD_REQUEST', '"env" must be an object of strings');
  }
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env as Record<string, unknown>)) {
    if (!NAME.test(name) || NEVER.test(name)) continue;
    if (!name.startsWith('KERNEL_') && !allowlist.includes(name)) continue;
    if (typeof value !== 'string')
      throw new GatewayError('BAD_REQUEST', `env ${name} must be a string`);
    if (value.length > MAX_VALUE || value.includes('\0')) continue;
    out[name] = value;
  }
  return out;
}
