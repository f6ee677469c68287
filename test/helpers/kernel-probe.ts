/**
 * Runs Python inside a real kernel through the gateway's channels socket and brings back one JSON
 * value, so that a test can assert in TypeScript on what the sandbox looks like from the inside.
 *
 * A probe cell ends with `_aido_emit(value)`, which prints one marked stdout line; {@link
 * KernelProbe.json} finds it and parses it. Data for a cell goes in through {@link pyData} as
 * base64-encoded JSON: nothing a test passes can change the meaning of the code around it, and the
 * plain text of a secret (the auth token) never appears in a cell's source or in IPython's history.
 */
import { expect } from 'chai';
import type { TestGateway } from './gateway.js';
import { stdout, TestClient, type Collected } from './ws-client.js';

/** Prefix of the stdout line that carries a probe's result. */
const MARK = 'AIDO-PROBE-RESULT ';

/**
 * Helpers defined once in every probed kernel (names start with `_aido_` to keep clear of the
 * user's namespace). Every walk uses lstat and never follows a symbolic link.
 */
export const PROBE_PRELUDE = `
import base64 as _aido_base64, errno as _aido_errno, json as _aido_json, os as _aido_os, stat as _aido_stat

def _aido_emit(value):
    print(${JSON.stringify(MARK)} + _aido_json.dumps(value), flush=True)

def _aido_data(b64):
    return _aido_json.loads(_aido_base64.b64decode(b64).decode('utf-8'))

def _aido_walk(top, skip=('/proc', '/sys')):
    """Yields (path, lstat) for top and everything below it, not entering skip or symlinks."""
    try:
        yield top, _aido_os.lstat(top)
    except OSError:
        return
    for root, dirs, files in _aido_os.walk(top, onerror=lambda e: None):
        dirs[:] = [d for d in dirs if _aido_os.path.join(root, d) not in skip]
        for name in dirs + files:
            path = _aido_os.path.join(root, name)
            try:
                yield path, _aido_os.lstat(path)
            except OSError:
                pass

def _aido_grep(tops, needle, skip=('/proc', '/sys')):
    """Paths under tops whose name or (regular file) content holds needle (bytes); unreadable count."""
    hits, unreadable, scanned = [], 0, 0
    for top in tops:
        for path, st in _aido_walk(top, skip):
            if needle in _aido_os.fsencode(path):
                hits.append(path)
                continue
            if not _aido_stat.S_ISREG(st.st_mode):
                continue
            scanned += 1
            try:
                with open(path, 'rb') as f:
                    tail = b''
                    while True:
                        block = f.read(1 << 20)
                        if not block:
                            break
                        if needle in tail + block:
                            hits.append(path)
                            break
                        tail = block[-len(needle):]
            except OSError:
                unreadable += 1
    return {'hits': sorted(set(hits)), 'unreadable': unreadable, 'scanned': scanned}

def _aido_fill(path, chunk=1 << 20):
    """Writes chunk-sized blocks to path until a write fails; the file is removed afterwards."""
    block = b'Z' * chunk
    fd = _aido_os.open(path, _aido_os.O_CREAT | _aido_os.O_WRONLY | _aido_os.O_TRUNC, 0o600)
    written, err = 0, None
    try:
        while written < 1 << 40:
            written += _aido_os.write(fd, block)
    except OSError as e:
        err = e.errno
    finally:
        _aido_os.close(fd)
        _aido_os.remove(path)
    return {'written': written, 'errno': err}
`;

/** A Python expression that evaluates to `value` (JSON-compatible), passed as base64 data. */
export function pyData(value: unknown): string {
  const b64 = Buffer.from(JSON.stringify(value), 'utf8').toString('base64');
  return `_aido_data('${b64}')`;
}

/** What went wrong in a cell, for assertion messages. */
function describeFailure(r: Collected): string {
  const err = r.iopub.find((m) => m.header.msg_type === 'error');
  const content = err?.content ?? r.reply.content;
  return `${String(content.ename)}: ${String(content.evalue)}\nstdout: ${stdout(r).slice(0, 2000)}`;
}

/** A client attached to one kernel, with the probe helpers installed. */
export class KernelProbe {
  private constructor(
    readonly client: TestClient,
    readonly kernelId: string,
  ) {}

  /** Connects to `kernelId` through the gateway and installs {@link PROBE_PRELUDE}. */
  static async open(t: TestGateway, kernelId: string): Promise<KernelProbe> {
    const client = await TestClient.connect(`${t.wsBase}/api/kernels/${kernelId}/channels`, {
      token: t.token,
    });
    const probe = new KernelProbe(client, kernelId);
    await probe.run('install the probe helpers', PROBE_PRELUDE);
    return probe;
  }

  /** Runs a cell that must succeed; resolves with everything it produced. */
  async run(
    what: string,
    code: string,
    timeoutMs = 30_000,
    extra: Record<string, unknown> = {},
  ): Promise<Collected> {
    const r = await this.client.execute(code, timeoutMs, extra);
    expect(r.reply.content.status, `${what}: ${describeFailure(r)}`).to.equal('ok');
    return r;
  }

  /**
   * Runs a cell that calls `_aido_emit(value)` once and resolves with that value. `extra` goes
   * into the execute_request content (e.g. `{store_history: false}`).
   */
  async json<T>(
    what: string,
    code: string,
    timeoutMs = 30_000,
    extra: Record<string, unknown> = {},
  ): Promise<T> {
    const r = await this.run(what, code, timeoutMs, extra);
    const line = stdout(r)
      .split('\n')
      .find((l) => l.startsWith(MARK));
    if (line === undefined)
      throw new Error(`${what}: the cell printed no result line; stdout: ${stdout(r)}`);
    return JSON.parse(line.slice(MARK.length)) as T;
  }

  close(): void {
    this.client.close();
  }
}
