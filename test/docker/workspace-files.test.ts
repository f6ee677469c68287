/**
 * Workspace files against real sandboxes: list, upload, download and delete round trips (binary
 * bytes intact), and every way out of /workspace refused without leaking what lies there: `..`,
 * absolute paths, percent-encoded traversal, symlinks made by kernel code, a FIFO; size limits
 * (413 for an upload over AIDO_MAX_UPLOAD_BYTES, 507 when /workspace is full).
 */
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { expect } from 'chai';
import type { ExecutionDocument } from '../../gateway/agent/agent-execution.js';
import type { WorkspaceListing } from '../../gateway/agent/workspace-files.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/** A marker from /etc/passwd that must never appear in an answer. */
const PASSWD_MARKER = 'root:x:0:0';

/** Runs code on a kernel through the agent API; fails unless it ran ok. */
async function run(t: TestGateway, kernelId: string, code: string): Promise<ExecutionDocument> {
  const res = await t.api(`/api/kernels/${kernelId}/execute`, {
    method: 'POST',
    body: JSON.stringify({ code }),
  });
  const doc = (await res.json()) as ExecutionDocument;
  expect(doc.status, JSON.stringify(doc.outputs)).to.equal('ok');
  return doc;
}

function stdoutOf(doc: ExecutionDocument): string {
  return doc.outputs
    .map((o) => (o.output_type === 'stream' && o.name === 'stdout' ? o.text : ''))
    .join('');
}

/** A request with the path sent exactly as given (fetch would normalise `..` and `%2e%2e`). */
function rawRequest(
  t: TestGateway,
  method: string,
  path: string,
  body?: Buffer,
): Promise<{ status: number; body: string; contentType: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: t.port,
        method,
        path,
        headers: {
          Authorization: `token ${t.token}`,
          ...(body ? { 'Content-Length': String(body.length) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            contentType: res.headers['content-type'],
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function put(
  t: TestGateway,
  kernelId: string,
  path: string,
  data: Buffer | string,
): Promise<Response> {
  return t.api(`/api/kernels/${kernelId}/files/${path}`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: typeof data === 'string' ? data : new Uint8Array(data),
  });
}

describe('workspace files (docker)', function () {
  this.timeout(180_000);
  let t: TestGateway;
  let id: string;

  before(async () => {
    t = await startTestGateway();
    id = (await t.startKernel()).id;
  });
  after(async () => {
    await t.close();
  });

  it('uploads, lists, downloads, overwrites and deletes a file', async () => {
    const csv = 'a,b\n1,2\n';
    const up = await put(t, id, 'data/in.csv', csv);
    expect(up.status).to.equal(201);
    const entry = (await up.json()) as Record<string, unknown>;
    expect(entry).to.include({
      name: 'in.csv',
      path: 'data/in.csv',
      type: 'file',
      size: csv.length,
      created: true,
      mime_type: 'text/csv',
      url: `/api/kernels/${id}/files/data/in.csv`,
    });

    const root = (await (await t.api(`/api/kernels/${id}/files`)).json()) as WorkspaceListing;
    expect(root.path).to.equal('');
    expect(root.entries.map((e) => [e.name, e.type])).to.deep.include(['data', 'directory']);
    const listed = (await (
      await t.api(`/api/kernels/${id}/files?path=data`)
    ).json()) as WorkspaceListing;
    expect(listed.entries).to.have.length(1);
    expect(listed.entries[0]).to.include({ name: 'in.csv', path: 'data/in.csv', size: csv.length });
    expect(Date.parse(listed.entries[0]?.mtime ?? '')).to.be.closeTo(Date.now(), 60_000);
    const sameByAbsolute = (await (
      await t.api(`/api/kernels/${id}/files?path=/workspace/data`)
    ).json()) as WorkspaceListing;
    expect(sameByAbsolute.entries).to.deep.equal(listed.entries);

    const down = await t.api(`/api/kernels/${id}/files/data/in.csv`);
    expect(down.status).to.equal(200);
    expect(down.headers.get('content-type')).to.equal('text/csv; charset=utf-8');
    expect(down.headers.get('x-content-type-options')).to.equal('nosniff');
    expect(await down.text()).to.equal(csv);

    // The kernel sees the upload in its working directory.
    expect(stdoutOf(await run(t, id, "print(open('data/in.csv').read(), end='')"))).to.equal(csv);

    const again = await put(t, id, 'data/in.csv', 'x\n');
    expect(again.status).to.equal(200);
    expect(((await again.json()) as { created: boolean }).created).to.equal(false);

    const del = await t.api(`/api/kernels/${id}/files/data/in.csv`, { method: 'DELETE' });
    expect(del.status).to.equal(204);
    const gone = await t.api(`/api/kernels/${id}/files/data/in.csv`);
    expect(gone.status).to.equal(404);
    expect(await gone.json()).to.deep.include({ reason: 'Not Found' });
    const delDir = await t.api(`/api/kernels/${id}/files/data`, { method: 'DELETE' });
    expect(delDir.status).to.equal(204);
    expect(stdoutOf(await run(t, id, "import os; print(os.path.exists('data'))"))).to.equal(
      'False\n',
    );
  });

  it('round-trips binary bytes exactly (every byte value, 1 MiB of random data)', async () => {
    const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const data = Buffer.concat([every, randomBytes(1024 ** 2), every]);
    expect((await put(t, id, 'blob.bin', data)).status).to.equal(201);
    const down = await t.api(`/api/kernels/${id}/files/blob.bin`);
    expect(down.headers.get('content-type')).to.equal('application/octet-stream');
    const back = Buffer.from(await down.arrayBuffer());
    expect(back.length).to.equal(data.length);
    expect(back.equals(data)).to.equal(true);
    const sha = (await import('node:crypto')).createHash('sha256').update(data).digest('hex');
    const inKernel = await run(
      t,
      id,
      "import hashlib; print(hashlib.sha256(open('blob.bin','rb').read()).hexdigest())",
    );
    expect(stdoutOf(inKernel).trim()).to.equal(sha);
    // A name with spaces and non-ASCII, percent-encoded in the URL.
    const name = encodeURIComponent('dé jà.txt');
    expect((await put(t, id, name, 'ok')).status).to.equal(201);
    expect(await (await t.api(`/api/kernels/${id}/files/${name}`)).text()).to.equal('ok');
  });

  it('refuses traversal with "..", absolute paths and percent-encodings, leaking nothing', async () => {
    const base = `/api/kernels/${id}/files`;
    const attempts: [string, string][] = [
      ['GET', `${base}/../etc/passwd`],
      ['GET', `${base}/../../../../etc/passwd`],
      ['GET', `${base}/%2e%2e/etc/passwd`],
      ['GET', `${base}/%2E%2E/%2E%2E/etc/passwd`],
      ['GET', `${base}/..%2Fetc%2Fpasswd`],
      ['GET', `${base}/%2Fetc%2Fpasswd`],
      ['GET', `${base}//etc/passwd`],
      ['GET', `${base}/a/%00/b`],
      ['GET', `${base}/%zz`],
      ['GET', `${base}?path=/etc`],
      ['GET', `${base}?path=..`],
      ['GET', `${base}?path=%2e%2e%2f%2e%2e%2fetc`],
      ['GET', `${base}?path=/workspace/../etc`],
      ['GET', `${base}?path=/workspace/%2e%2e/etc`],
      ['PUT', `${base}/../tmp/escaped.txt`],
      ['PUT', `${base}/%2e%2e/tmp/escaped.txt`],
      ['DELETE', `${base}/%2e%2e/etc/passwd`],
      ['DELETE', `${base}/..`],
    ];
    for (const [method, path] of attempts) {
      const res = await rawRequest(
        t,
        method,
        path,
        method === 'PUT' ? Buffer.from('x') : undefined,
      );
      expect(res.status, `${method} ${path}`).to.be.oneOf([400, 404]);
      expect(res.contentType, `${method} ${path}`).to.match(/^application\/json/);
      const body = JSON.parse(res.body) as { reason: string; message: string };
      expect(body.reason, `${method} ${path}`).to.be.a('string');
      expect(res.body, `${method} ${path}`).to.not.include(PASSWD_MARKER);
    }
    // Everything that names the outside is a 400 (a missing file inside would be a 404).
    const abs = await rawRequest(t, 'GET', `${base}/%2Fetc%2Fpasswd`);
    expect(abs.status).to.equal(400);
    expect(JSON.parse(abs.body)).to.deep.include({ reason: 'Bad Request' });
    expect(
      stdoutOf(await run(t, id, "import os; print(os.path.exists('/tmp/escaped.txt'))")),
    ).to.equal('False\n');
  });

  it('refuses symlinks that point out of /workspace (made by kernel code), deletes only the link', async () => {
    await run(
      t,
      id,
      [
        'import os',
        "os.symlink('/etc', 'etc-link')",
        "os.symlink('/etc/passwd', 'pw')",
        "os.symlink('/tmp', 'tmp-link')",
        "os.makedirs('inside', exist_ok=True)",
        "open('inside/ok.txt', 'w').write('fine')",
        "os.symlink('inside/ok.txt', 'ok-link')",
      ].join('\n'),
    );
    const base = `/api/kernels/${id}/files`;
    for (const [method, path] of [
      ['GET', `${base}/etc-link/passwd`],
      ['GET', `${base}/pw`],
      ['GET', `${base}?path=etc-link`],
      ['GET', `${base}?path=tmp-link`],
      ['PUT', `${base}/tmp-link/evil.txt`],
      ['PUT', `${base}/pw`],
      ['PUT', `${base}/tmp-link/new-dir/evil.txt`],
      ['DELETE', `${base}/tmp-link/anything`],
    ] as const) {
      const res = await rawRequest(
        t,
        method,
        path,
        method === 'PUT' ? Buffer.from('x') : undefined,
      );
      expect(res.status, `${method} ${path}`).to.equal(400);
      expect(JSON.parse(res.body), `${method} ${path}`).to.deep.include({ reason: 'Bad Request' });
      expect(res.body).to.match(/outside \/workspace/);
      expect(res.body).to.not.include(PASSWD_MARKER);
    }
    const check = await run(
      t,
      id,
      "import os; print(os.path.exists('/tmp/evil.txt'), os.path.exists('/tmp/new-dir'))",
    );
    expect(stdoutOf(check)).to.equal('False False\n');

    // A link inside the workspace that stays inside is fine; listings show links as links.
    expect(await (await t.api(`${base}/ok-link`)).text()).to.equal('fine');
    const listing = (await (await t.api(base)).json()) as WorkspaceListing;
    const types = Object.fromEntries(listing.entries.map((e) => [e.name, e.type]));
    expect(types).to.include({ 'etc-link': 'symlink', pw: 'symlink', inside: 'directory' });

    // Deleting a link removes the link, never its target.
    expect((await t.api(`${base}/pw`, { method: 'DELETE' })).status).to.equal(204);
    expect((await t.api(`${base}/tmp-link`, { method: 'DELETE' })).status).to.equal(204);
    const after = await run(
      t,
      id,
      "import os; print(os.path.lexists('pw'), os.path.exists('/etc/passwd'), os.path.isdir('/tmp'))",
    );
    expect(stdoutOf(after)).to.equal('False True True\n');
  });

  it('answers a FIFO, a directory download and a missing file with clear errors', async () => {
    await run(t, id, "import os; os.mkfifo('fifo')");
    const fifo = await t.api(`/api/kernels/${id}/files/fifo`);
    expect(fifo.status).to.equal(400);
    expect(((await fifo.json()) as { message: string }).message).to.match(/not a regular file/);
    const putFifo = await put(t, id, 'fifo', 'x');
    expect(putFifo.status).to.equal(400);
    const dir = await t.api(`/api/kernels/${id}/files/inside`);
    expect(dir.status).to.equal(400);
    expect(((await dir.json()) as { message: string }).message).to.match(/is a directory/);
    const notDir = await t.api(`/api/kernels/${id}/files?path=inside/ok.txt`);
    expect(notDir.status).to.equal(400);
    const missing = await t.api(`/api/kernels/${id}/files?path=nope`);
    expect(missing.status).to.equal(404);
    const unknownKernel = await t.api('/api/kernels/00000000-0000-0000-0000-000000000000/files');
    expect(unknownKernel.status).to.equal(404);
  });
});

describe('workspace files: size limits (docker)', function () {
  this.timeout(180_000);
  let t: TestGateway;
  let id: string;

  before(async () => {
    t = await startTestGateway({
      maxUploadBytes: 4 * 1024 ** 2,
      workspaceSizeBytes: 2 * 1024 ** 2,
    });
    id = (await t.startKernel()).id;
  });
  after(async () => {
    await t.close();
  });

  it('answers 413 for an upload over AIDO_MAX_UPLOAD_BYTES', async () => {
    const res = await put(t, id, 'big.bin', Buffer.alloc(4 * 1024 ** 2 + 1));
    expect(res.status).to.equal(413);
    expect(await res.json()).to.deep.include({ reason: 'Payload Too Large' });
  });

  it('answers 507 when /workspace is full, and leaves no partial file', async () => {
    const res = await put(t, id, 'full.bin', Buffer.alloc(3 * 1024 ** 2, 1));
    expect(res.status).to.equal(507);
    const body = (await res.json()) as { reason: string; message: string };
    expect(body.reason).to.equal('Insufficient Storage');
    expect(body.message).to.match(/no space left in \/workspace/);
    expect((await t.api(`/api/kernels/${id}/files/full.bin`)).status).to.equal(404);
    // What fits still does.
    expect((await put(t, id, 'fits.bin', Buffer.alloc(1024 ** 2, 1))).status).to.equal(201);
  });
});
