/**
 * The one way an environment reaches a running kernel's os.environ: the values are written as a
 * JSON data file in the kernel's private directory (/run/kernel), and fixed code loads it. Nothing
 * from the client is ever spliced into code. Two writers exist because the trust differs: a pooled
 * sandbox's start-up env is a root-owned file the kernel cannot change (Sandbox.putFile), an agent
 * request's env is a file written through exec's stdin and removed by the loader (it may be
 * handed over again with other values).
 */

/** Where a hand-over puts the data file, and whether the loader removes it afterwards. */
export interface EnvRoute {
  /** The file's name in /run/kernel. */
  file: string;
  /** Writes the JSON data file. */
  write(json: Buffer): Promise<void>;
  /** Runs the loader code in the kernel; throws when it did not succeed. */
  load(code: string): Promise<void>;
  /** The loader removes the file after reading it. */
  removeAfter: boolean;
}

/** The fixed loader for /run/kernel/<file> (a constant name, never client data). */
export function envLoaderCode(file: string, removeAfter: boolean): string {
  const path = `/run/kernel/${checkedName(file)}`;
  const load = [
    `with open('${path}', encoding='utf-8') as f:`,
    '    os.environ.update(json.load(f))',
  ];
  const body = removeAfter
    ? ['try:', ...load.map((l) => `    ${l}`), 'finally:', `    os.remove('${path}')`]
    : load;
  return [
    'def _aido_env():',
    '    import json, os',
    ...body.map((l) => `    ${l}`),
    '_aido_env()',
    'del _aido_env',
  ].join('\n');
}

/**
 * The argv of a fixed program that stores its stdin as /run/kernel/<file> (for a writer that runs
 * in the sandbox: exec with the JSON as stdin). The name comes as an argument, never as code.
 */
export function envWriterArgv(file: string): string[] {
  return ['python3', '-I', '-S', '-c', ENV_WRITER, `/run/kernel/${checkedName(file)}`];
}

const ENV_WRITER = String.raw`
import os, sys
data = sys.stdin.buffer.read()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
view = memoryview(data)
while view:
    view = view[os.write(fd, view):]
os.close(fd)
`;

function checkedName(file: string): string {
  if (!/^[a-z][a-z0-9.-]*$/.test(file)) throw new Error(`bad env file name ${file}`);
  return file;
}

/** Hands `env` to the kernel along `route`: the data file, then the fixed loader. */
export async function handOverEnv(env: Record<string, string>, route: EnvRoute): Promise<void> {
  await route.write(Buffer.from(JSON.stringify(env)));
  await route.load(envLoaderCode(route.file, route.removeAfter));
}
