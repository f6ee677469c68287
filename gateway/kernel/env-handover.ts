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
  if (!/^[a-z][a-z0-9.-]*$/.test(file)) throw new Error(`bad env file name ${file}`);
  const path = `/run/kernel/${file}`;
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

/** Hands `env` to the kernel along `route`: the data file, then the fixed loader. */
export async function handOverEnv(env: Record<string, string>, route: EnvRoute): Promise<void> {
  await route.write(Buffer.from(JSON.stringify(env)));
  await route.load(envLoaderCode(route.file, route.removeAfter));
}
