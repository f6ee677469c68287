/**
 * Runs small inline Python scripts against Debian's python3-jupyter-client, so tests can check our
 * wire format against the reference implementation. Scripts are passed as one `-c` argument and
 * take their input as JSON on stdin: nothing is ever spliced into a shell command or into code.
 *
 * The interpreter is `/usr/bin/python3`, or `AIDO_PYTHON` when set.
 */
import { execFile } from 'node:child_process';

/** The Python interpreter the cross-checks use. */
export const PYTHON = process.env['AIDO_PYTHON'] ?? '/usr/bin/python3';

/** Default time a script may take (interpreter start and `import jupyter_client` included). */
const DEFAULT_TIMEOUT_MS = 15_000;

/**
 * Runs `script` with `input` on stdin and resolves with its stdout.
 *
 * @param label - what the script does, for error messages.
 * @param script - Python source, run as `python3 -c script`.
 * @param input - text written to the script's stdin.
 * @param timeoutMs - how long to wait before killing it.
 */
export function runPython(
  label: string,
  script: string,
  input = '',
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      PYTHON,
      ['-c', script],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve(stdout);
          return;
        }
        const why = err.killed
          ? `did not finish within ${timeoutMs} ms`
          : `failed (${err.code ?? err.signal ?? 'no exit code'})`;
        reject(new Error(`python script "${label}" ${why} [${PYTHON}]\n${stderr.trim()}`));
      },
    );
    // A script that exits early (or an interpreter that is missing) closes stdin under us; the
    // exit callback above reports that, so the pipe error itself is not news.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input, 'utf8');
  });
}

/**
 * Runs `script` with `input` serialised as JSON on stdin, and parses its stdout as JSON.
 *
 * @param label - what the script does, for error messages.
 * @param script - Python source that reads JSON from stdin and writes JSON to stdout.
 * @param input - any JSON-serialisable value.
 */
export async function runPythonJson(
  label: string,
  script: string,
  input: unknown,
): Promise<unknown> {
  const stdout = await runPython(label, script, JSON.stringify(input));
  try {
    return JSON.parse(stdout) as unknown;
  } catch (err) {
    throw new Error(`python script "${label}" did not print JSON: ${stdout.slice(0, 200)}`, {
      cause: err,
    });
  }
}

/**
 * Checks that the interpreter can `import jupyter_client`, and returns its version.
 *
 * @throws Error naming the interpreter and the fix when it cannot.
 */
export async function requireJupyterClient(): Promise<string> {
  try {
    const out = await runPython(
      'import jupyter_client',
      'import jupyter_client; print(jupyter_client.__version__)',
    );
    return out.trim();
  } catch (err) {
    throw new Error(
      `The Python cross-check needs jupyter_client, and "import jupyter_client" failed with ` +
        `${PYTHON}. Install Debian's package (apt-get install python3-jupyter-client) or point ` +
        `AIDO_PYTHON at an interpreter that has it.\n${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}
