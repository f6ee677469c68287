/**
 * Workspace files without a sandbox: the gateway's path check, MIME types, snapshot diffs, and the
 * mapping of the helper's exit codes (and garbage) to errors, with a fake exec.
 */
import { Writable } from 'node:stream';
import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';
import { GatewayError } from '../../../gateway/base/errors.js';
import { createLogger } from '../../../gateway/base/logger.js';
import type { ExecOptions, ExecResult } from '../../../gateway/runtime/runtime.js';
import {
  changedFiles,
  mimeTypeOf,
  workspacePath,
  WorkspaceFiles,
  type WorkspaceSnapshot,
} from '../../../gateway/agent/workspace-files.js';

use(chaiAsPromised);

describe('workspacePath', () => {
  it('normalises relative and /workspace-absolute paths', () => {
    expect(workspacePath('')).to.equal('');
    expect(workspacePath('.')).to.equal('');
    expect(workspacePath('/workspace')).to.equal('');
    expect(workspacePath('/workspace/')).to.equal('');
    expect(workspacePath('a/b.csv')).to.equal('a/b.csv');
    expect(workspacePath('./a//b/./c')).to.equal('a/b/c');
    expect(workspacePath('/workspace/a/b')).to.equal('a/b');
    expect(workspacePath('dé jà/ü.txt')).to.equal('dé jà/ü.txt');
    expect(workspacePath('..a/b..')).to.equal('..a/b..');
  });

  it('refuses "..", other absolute paths, NUL and control characters, over-long paths', () => {
    for (const bad of [
      '..',
      '../etc/passwd',
      'a/../../etc',
      'a/..',
      '/etc/passwd',
      '/workspace/../etc',
      '/workspacex/a',
      '/',
      'a\0b',
      'a\nb',
      'a\u007fb',
      'x'.repeat(256),
      `${'a/'.repeat(2049)}a`,
      5,
      null,
      ['a'],
    ]) {
      expect(() => workspacePath(bad), JSON.stringify(bad))
        .to.throw(GatewayError)
        .with.property('code', 'BAD_PATH');
    }
  });
});

describe('mimeTypeOf', () => {
  it('maps common extensions, case-insensitively, and falls back to octet-stream', () => {
    expect(mimeTypeOf('a/b.CSV')).to.equal('text/csv');
    expect(mimeTypeOf('plot.png')).to.equal('image/png');
    expect(mimeTypeOf('x.svg')).to.equal('image/svg+xml');
    expect(mimeTypeOf('data.parquet')).to.equal('application/vnd.apache.parquet');
    expect(mimeTypeOf('Makefile')).to.equal('application/octet-stream');
    expect(mimeTypeOf('.bashrc')).to.equal('application/octet-stream');
    expect(mimeTypeOf('dir.csv/file')).to.equal('application/octet-stream');
  });
});

describe('changedFiles', () => {
  const snap = (files: [string, number, string][]): WorkspaceSnapshot => ({
    files: new Map(files.map(([p, size, mtimeNs]) => [p, { size, mtimeNs }])),
    truncated: false,
  });

  it('lists new files and files whose size or mtime changed, sorted by path', () => {
    const before = snap([
      ['same.txt', 1, '10'],
      ['grown.txt', 1, '10'],
      ['touched.txt', 1, '10'],
      ['deleted.txt', 1, '10'],
    ]);
    const after = snap([
      ['same.txt', 1, '10'],
      ['grown.txt', 2, '10'],
      ['touched.txt', 1, '11'],
      ['b/new.csv', 5, '12'],
    ]);
    expect(changedFiles(before, after)).to.deep.equal([
      { path: 'b/new.csv', size: 5, change: 'created' },
      { path: 'grown.txt', size: 2, change: 'modified' },
      { path: 'touched.txt', size: 1, change: 'modified' },
    ]);
  });
});

describe('WorkspaceFiles (fake exec)', () => {
  const logger = createLogger('silent');
  const answering =
    (r: Partial<ExecResult>, seen: string[][] = []) =>
    (_id: string, argv: string[], _stdin?: Buffer, opts?: ExecOptions): Promise<ExecResult> => {
      seen.push(argv);
      const result = { exitCode: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), ...r };
      // A streaming caller gets stdout through its sink, as from the real exec.
      if (opts?.stdout) {
        const sink = opts.stdout;
        return new Promise((resolve, reject) => {
          sink.once('error', reject);
          sink.write(result.stdout, (err) => {
            if (err) reject(err);
            else resolve({ ...result, stdout: Buffer.alloc(0) });
          });
        });
      }
      return Promise.resolve(result);
    };
  const limits = { timeoutMs: 5000, maxDownloadBytes: 1000 };

  it('passes the path as its own argv element after a fixed program', async () => {
    const seen: string[][] = [];
    const files = new WorkspaceFiles(
      answering({ stdout: Buffer.from('5\nbytes') }, seen),
      logger,
      limits,
    );
    const weird = "a'; rm -rf / #/$(x)";
    expect((await files.read('c', weird)).toString()).to.equal('bytes');
    const [argv] = seen;
    expect(argv?.slice(0, 4)).to.deep.equal(['python3', '-I', '-S', '-c']);
    // A read may take the cap plus its bytes at 1 MiB/s (the cap then bounds time without progress).
    expect(argv?.slice(5)).to.deep.equal(['read', weird, '1000', '5.001']);
    expect(argv?.[4]).to.not.include(weird);
  });

  it('maps the helper’s exit codes to errors without relaying its stderr', async () => {
    const cases: [number, string, RegExp][] = [
      [10, 'BAD_PATH', /outside \/workspace/],
      [11, 'FILE_NOT_FOUND', /no such file/],
      [12, 'BAD_PATH', /is a directory/],
      [13, 'BAD_PATH', /not a directory/],
      [14, 'WORKSPACE_FULL', /no space left/],
      [15, 'BAD_PATH', /not a regular file/],
      [16, 'BAD_PATH', /permission denied/],
      [1, 'SANDBOX_EXEC_FAILED', /exit code 1/],
      [137, 'SANDBOX_EXEC_FAILED', /exit code 137/],
    ];
    for (const [exitCode, code, message] of cases) {
      const files = new WorkspaceFiles(
        answering({ exitCode, stderr: Buffer.from('root:x:0:0 secret') }),
        logger,
        limits,
      );
      const err = (await expect(files.read('c', 'x')).to.be.rejectedWith(
        GatewayError,
      )) as GatewayError;
      expect(err.code, String(exitCode)).to.equal(code);
      expect(err.message).to.match(message);
      expect(err.message).to.not.include('secret');
    }
  });

  it('refuses answers that do not parse as what the helper promises', async () => {
    for (const out of [
      'not json',
      '{"files": 5, "truncated": false}',
      '{"files": [["a", -1, "1"]], "truncated": false}',
    ]) {
      const files = new WorkspaceFiles(answering({ stdout: Buffer.from(out) }), logger, limits);
      await expect(files.snapshot('c')).to.be.rejectedWith(GatewayError, /garbage/);
    }
  });

  it('turns a failed exec into SANDBOX_EXEC_FAILED and refuses /workspace itself for read, write, delete', async () => {
    const files = new WorkspaceFiles(() => Promise.reject(new Error('pids limit')), logger, limits);
    await expect(files.list('c', '')).to.be.rejectedWith(GatewayError, /process limit/);
    await expect(files.read('c', '')).to.be.rejectedWith(GatewayError, /is a directory/);
    await expect(files.write('c', '', Buffer.from('x'))).to.be.rejectedWith(GatewayError);
    await expect(files.remove('c', '')).to.be.rejectedWith(GatewayError, /cannot be deleted/);
  });

  it('refuses a file over the download limit by the size the helper saw, before any byte', async () => {
    const files = new WorkspaceFiles(
      answering({ exitCode: 18, stderr: Buffer.from('3221225472') }),
      logger,
      limits,
    );
    const err = (await expect(files.read('c', 'x')).to.be.rejectedWith(
      GatewayError,
    )) as GatewayError;
    expect(err.code).to.equal('PAYLOAD_TOO_LARGE');
    expect(err.message).to.match(/3221225472 bytes, the limit is 1000 bytes/);
    // A size that is not a number is not shown.
    const liar = new WorkspaceFiles(
      answering({ exitCode: 18, stderr: Buffer.from('<script>') }),
      logger,
      limits,
    );
    await expect(liar.read('c', 'x')).to.be.rejectedWith(GatewayError, /\(the limit is 1000/);
  });

  it('refuses a read whose bytes do not match the size it announced', async () => {
    for (const out of ['5\nbyt', 'x\nbytes', '3\nbytes']) {
      const files = new WorkspaceFiles(answering({ stdout: Buffer.from(out) }), logger, limits);
      await expect(files.read('c', 'x'), out).to.be.rejected;
    }
  });

  it('streams a download to the destination opened with the announced size', async () => {
    const files = new WorkspaceFiles(
      answering({ stdout: Buffer.from('5\nbytes') }),
      logger,
      limits,
    );
    const got: Buffer[] = [];
    let announced = -1;
    await files.download('c', 'x', (size) => {
      announced = size;
      return new Writable({
        write(chunk: Buffer, _enc, done): void {
          got.push(chunk);
          done();
        },
      });
    });
    expect(announced).to.equal(5);
    expect(Buffer.concat(got).toString()).to.equal('bytes');
  });
});
