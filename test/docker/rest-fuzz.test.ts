/**
 * Fuzzing the REST surface and the channels upgrade of a real gateway, without starting a kernel:
 * every request here is one the gateway must refuse before it creates anything (non-object JSON,
 * objects with a wrong-typed or unknown `name`, `env` or `kernel_id`, random bytes, bodies over
 * 1 MiB, unsupported charsets and encodings, random paths under /api/kernels/…, malformed
 * %-escapes and request targets, random query strings). Each answer must be a 4xx with Jupyter's
 * `{reason, message}` and no stack trace; afterwards the gateway still answers and runs no
 * sandbox. At most 500 requests in all.
 */
import http from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { expect } from 'chai';
import fc from 'fast-check';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

interface FuzzRequest {
  method: string;
  /** The request target exactly as sent (no normalisation by a URL parser). */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Sends the WebSocket upgrade headers. */
  upgrade?: boolean;
  /** Leave out the token. */
  anonymous?: boolean;
}

interface FuzzResponse {
  status: number;
  contentType: string;
  text: string;
}

/** A server-side stack frame (`at fn (/path/file.ts:12:3)`) or a module path in a body. */
const STACK_TRACE = /\bat\s+[^\n]*\(?\/[^\n]*:\d+:\d+\)?|node_modules\/|\/gateway\/[\w-]+\.[jt]s/;

function describeRequest(req: FuzzRequest): string {
  const body = req.body
    ? ` body[${req.body.length}]=${JSON.stringify(req.body.subarray(0, 80).toString('latin1'))}`
    : '';
  return `${req.method} ${req.path}${req.upgrade ? ' (upgrade)' : ''} ${JSON.stringify(req.headers ?? {})}${body}`;
}

/** Sends one raw request on its own connection; resolves with the status and the body. */
function send(t: TestGateway, req: FuzzRequest): Promise<FuzzResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...req.headers };
    if (!req.anonymous) headers.Authorization = `token ${t.token}`;
    if (req.upgrade) {
      headers.Connection = 'Upgrade';
      headers.Upgrade = 'websocket';
      headers['Sec-WebSocket-Key'] = 'dGhlIHNhbXBsZSBub25jZQ==';
      headers['Sec-WebSocket-Version'] = '13';
    }
    if (req.body) headers['Content-Length'] = String(req.body.length);
    let answered = false;
    const timer = setTimeout(() => {
      r.destroy();
      reject(new Error(`no answer within 10 s to ${describeRequest(req)}`));
    }, 10_000);
    const r = http.request({
      host: '127.0.0.1',
      port: t.port,
      method: req.method,
      path: req.path,
      headers,
      agent: false,
    });
    r.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          contentType: res.headers['content-type'] ?? '',
          text: Buffer.concat(chunks).toString('utf8'),
        });
      });
    });
    r.on('upgrade', (_res, socket) => {
      answered = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: 101, contentType: '', text: '' });
    });
    r.on('error', (err) => {
      // The gateway may answer 413 and close before a huge body is written: that is an answer.
      if (answered) return;
      clearTimeout(timer);
      reject(new Error(`${String(err)} for ${describeRequest(req)}`));
    });
    r.end(req.body);
  });
}

/** A refusal: 4xx, and (except for HEAD) a JSON `{reason, message}` body without internals. */
function expectRefusal(req: FuzzRequest, res: FuzzResponse, opts: { json?: boolean } = {}): void {
  const what = describeRequest(req);
  expect(res.status, `status of ${what}: ${res.text.slice(0, 200)}`).to.be.within(400, 499);
  if (req.method === 'HEAD') return;
  expect(res.text, `no stack trace in the body of ${what}`).to.not.match(STACK_TRACE);
  if (opts.json === false) return;
  expect(res.contentType, `content type of ${what}`).to.match(/^application\/json/);
  const body = JSON.parse(res.text) as Record<string, unknown>;
  expect(body, `body of ${what}`).to.have.all.keys('reason', 'message');
  expect(body.reason).to.be.a('string');
  expect(body.message).to.be.a('string');
  expect(res.text, `no stack trace in the body of ${what}`).to.not.match(STACK_TRACE);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Printable ASCII except the characters that end a path segment. */
const PATH_CHARS = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) =>
  String.fromCharCode(0x21 + i),
).filter((c) => !'/?#'.includes(c));

/** Broken or tricky %-escapes: truncated, non-hex, overlong UTF-8, NUL, encoded slash and dots. */
const NASTY_SEGMENTS = [
  '%',
  '%z',
  '%zz',
  '%E0%A4%A',
  '%C0%AE',
  '%FF%FE',
  '%00',
  '%2F',
  '%2e%2e',
  '..',
  '.',
  '..%2F..%2Fsecurity%2Fpanic',
  'interrupt',
  'restart',
  'channels',
  '__proto__',
  'constructor',
];

const segmentArb = fc.oneof(
  fc.string({ unit: fc.constantFrom(...PATH_CHARS), minLength: 1, maxLength: 24 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }).map(encodeURIComponent),
  fc.constantFrom(...NASTY_SEGMENTS),
);

const queryArb = fc.oneof(
  fc.string({ unit: fc.constantFrom(...PATH_CHARS, '/', '?'), maxLength: 40 }),
  fc
    .array(fc.tuple(segmentArb, segmentArb), { maxLength: 4 })
    .map((kv) => kv.map(([k, v]) => `${k}=${v}`).join('&')),
);

const withQuery = (path: string, query: string | null): string =>
  query === null ? path : `${path}?${query}`;

// ---- bodies that POST /api/kernels must refuse ---------------------------------------------------

const notUuid = fc.string({ maxLength: 40 }).filter((s) => !UUID.test(s));
const notString = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
);

/** `name`: not a string, or a kernelspec that does not exist (null and '' mean the default). */
const badName = fc.oneof(
  notString,
  fc.string({ minLength: 1, maxLength: 24 }).filter((s) => s !== 'python3'),
);
const goodName = fc.constantFrom(null, '', 'python3');
/** `env`: not an object, or an object with a KERNEL_* value that is not a string. */
const badEnv = fc.oneof(
  fc.integer(),
  fc.string(),
  fc.boolean(),
  fc.array(fc.string(), { maxLength: 3 }),
  fc
    .tuple(fc.stringMatching(/^KERNEL_[A-Z0-9_]{1,12}$/), notString)
    .map(([k, v]) => ({ [k]: v, KERNEL_OK: 'x' })),
);
const goodEnv = fc.oneof(
  fc.constant({}),
  fc.dictionary(fc.stringMatching(/^KERNEL_[A-Z_]{1,8}$/), fc.string({ maxLength: 8 }), {
    maxKeys: 3,
  }),
);
/** `kernel_id`: not a string, or a string that is not a UUID (a UUID would start a kernel). */
const badKernelId = fc.oneof(notString, notUuid);

type Field = 'name' | 'env' | 'kernel_id';
const BAD: Record<Field, fc.Arbitrary<unknown>> = {
  name: badName,
  env: badEnv,
  kernel_id: badKernelId,
};
const GOOD: Record<Field, fc.Arbitrary<unknown>> = {
  name: goodName,
  env: goodEnv,
  kernel_id: fc.constant(null),
};

/** A JSON object with at least one wrong field, others right or absent, plus random extra keys. */
const wrongTypedBody = fc
  .subarray(['name', 'env', 'kernel_id'] as Field[], { minLength: 1 })
  .chain((bad) =>
    fc.record({
      extra: fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), {
        maxKeys: 3,
      }),
      fields: fc.record({
        name: bad.includes('name') ? BAD.name : fc.option(GOOD.name, { nil: undefined }),
        env: bad.includes('env') ? BAD.env : fc.option(GOOD.env, { nil: undefined }),
        kernel_id: bad.includes('kernel_id')
          ? BAD.kernel_id
          : fc.option(GOOD.kernel_id, { nil: undefined }),
      }),
    }),
  )
  .map(({ extra, fields }) => {
    const body = new Map<string, unknown>(Object.entries(extra));
    for (const k of ['name', 'env', 'kernel_id'] as const) {
      if (fields[k] === undefined) body.delete(k);
      else body.set(k, fields[k]);
    }
    return Object.fromEntries(body);
  });

/** Any JSON that is not an object. */
const nonObjectJson = fc.oneof(
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
  fc.string(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
);

function parsesToObject(bytes: Uint8Array): boolean {
  try {
    const v: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}

/**
 * The body as the gateway's parser sees it after its Content-Encoding, or undefined where that
 * encoding is refused or the bytes do not decode (a few random bytes can be a valid, empty
 * brotli or deflate stream: an empty body, which POST /api/kernels rightly accepts).
 */
function decodedBody(body: Buffer, encoding: string | undefined): Buffer | undefined {
  try {
    switch (encoding?.toLowerCase()) {
      case undefined:
      case 'identity':
        return body;
      case 'gzip':
        return gunzipSync(body);
      case 'deflate':
        return inflateSync(body);
      case 'br':
        return brotliDecompressSync(body);
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

const contentTypeArb = fc.option(
  fc.oneof(
    fc.constantFrom(
      'application/json',
      'text/plain',
      'application/octet-stream',
      'application/json; charset=utf-8',
    ),
    fc.string({ unit: fc.constantFrom(...PATH_CHARS, ' ', '/', ';', '='), maxLength: 30 }),
  ),
  { nil: undefined },
);

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v), 'utf8');

describe('REST and upgrade fuzz (a real gateway, no kernels)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  let requests = 0;

  async function expectRefused(req: FuzzRequest, opts: { json?: boolean } = {}): Promise<void> {
    requests++;
    expectRefusal(req, await send(t, req), opts);
  }

  before(async () => {
    // One kernel at most: should a bug let a body through, it starts one kernel, not many.
    t = await startTestGateway({ maxKernels: 1, poolSize: 0 });
  });

  after(async () => {
    console.log(`      REST fuzz: ${requests} requests`);
    await t.close();
  });

  it('POST /api/kernels with JSON that is not an object: 400', async () => {
    await fc.assert(
      fc.asyncProperty(nonObjectJson, fc.option(queryArb, { nil: null }), async (v, q) => {
        await expectRefused({ method: 'POST', path: withQuery('/api/kernels', q), body: json(v) });
      }),
      { numRuns: 50 },
    );
  });

  it('POST /api/kernels with a wrong-typed or unknown name, env or kernel_id: 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(wrongTypedBody, fc.option(queryArb, { nil: null }), async (body, q) => {
        await expectRefused({
          method: 'POST',
          path: withQuery('/api/kernels', q),
          body: json(body),
        });
      }),
      { numRuns: 130 },
    );
  });

  it('POST /api/kernels with random bytes under any content type: 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 512 }).filter((b) => !parsesToObject(b)),
        contentTypeArb,
        async (bytes, contentType) => {
          await expectRefused({
            method: 'POST',
            path: '/api/kernels',
            headers: contentType === undefined ? {} : { 'Content-Type': contentType },
            body: Buffer.from(bytes),
          });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('bodies over 1 MiB, even a valid start request: 413', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1024 * 1024 + 1, max: 3 * 1024 * 1024 }),
        fc.constantFrom('valid-object', 'array', 'bytes'),
        async (size, shape) => {
          let body: Buffer;
          if (shape === 'valid-object') {
            const head = '{"name":"python3","pad":"';
            body = Buffer.from(`${head}${'x'.repeat(size - head.length - 2)}"}`);
          } else if (shape === 'array') {
            body = Buffer.from(`[${'0,'.repeat(Math.floor(size / 2))}0]`);
          } else {
            body = Buffer.alloc(size, 0x7b);
          }
          expect(body.length).to.be.above(1024 * 1024);
          await expectRefused({ method: 'POST', path: '/api/kernels', body });
        },
      ),
      { numRuns: 4 },
    );
  });

  it('unsupported charsets and content encodings: 4xx, not 500', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.option(
          fc.oneof(
            fc.constantFrom('utf-16', 'utf-32', 'latin1', 'koi8-r', 'foo', 'UTF-8'),
            fc.stringMatching(/^[a-z0-9-]{1,12}$/),
          ),
          { nil: undefined },
        ),
        fc.option(
          fc.oneof(
            fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'foo', 'gzip, gzip'),
            fc.stringMatching(/^[a-z0-9-]{1,12}$/),
          ),
          { nil: undefined },
        ),
        fc.oneof(
          fc.constant(Buffer.from('[]')),
          fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b)),
        ),
        async (charset, encoding, body) => {
          const headers: Record<string, string> = {
            'Content-Type':
              charset === undefined ? 'application/json' : `application/json; charset=${charset}`,
          };
          if (encoding !== undefined) headers['Content-Encoding'] = encoding;
          // Unless it decodes to nothing or to a JSON object, the body can start nothing.
          const decoded = decodedBody(body, encoding);
          // A UTF-16/32 charset drops a trailing partial code unit: a body shorter than one unit
          // decodes to an empty body too.
          const unit = /^utf-?(16|32)/i.test(charset ?? '') ? 4 : 1;
          if (decoded !== undefined && (decoded.length < unit || parsesToObject(decoded))) return;
          await expectRefused({ method: 'POST', path: '/api/kernels', headers, body });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('random paths, methods and query strings under /api/kernels/<random>/…: 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'DELETE', 'PATCH', 'PUT', 'HEAD'),
        segmentArb,
        fc.option(fc.oneof(fc.constantFrom('interrupt', 'restart', 'channels'), segmentArb), {
          nil: null,
        }),
        fc.option(segmentArb, { nil: null }),
        fc.boolean(),
        fc.option(queryArb, { nil: null }),
        async (method, id, sub, subsub, trailingSlash, q) => {
          let path = `/api/kernels/${id}`;
          if (sub !== null) path += `/${sub}`;
          if (sub !== null && subsub !== null) path += `/${subsub}`;
          if (trailingSlash) path += '/';
          // A body that no route accepts: should a path reach a create route, nothing starts.
          const body = ['POST', 'PATCH', 'PUT'].includes(method) ? Buffer.from('[]') : undefined;
          await expectRefused({ method, path: withQuery(path, q), ...(body ? { body } : {}) });
        },
      ),
      { numRuns: 110 },
    );
  });

  it('random query strings on the read-only endpoints: 200', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/api', '/api/kernels', '/api/kernelspecs', '/api/sessions'),
        queryArb,
        async (path, q) => {
          requests++;
          const req = { method: 'GET', path: withQuery(path, q) };
          const res = await send(t, req);
          expect(res.status, describeRequest(req)).to.equal(200);
          expect(() => JSON.parse(res.text) as unknown).to.not.throw();
        },
      ),
      { numRuns: 20 },
    );
  });

  it('malformed request targets, plain and as WebSocket upgrades: 4xx (the gateway stays up)', async () => {
    const targets = [
      '//[',
      '//[/api/kernels/x/channels',
      '//user@/api',
      'http://gateway/api/kernels/%E0%A4%A/channels',
      '/api/kernels/%E0%A4%A',
      '/api/kernels/%/restart',
      '/api/kernels/%E0%A4%A/channels',
      '/api/kernels/%zz/channels?session_id=x',
    ];
    for (const path of targets) {
      for (const upgrade of [false, true]) {
        await expectRefused({ method: 'GET', path, upgrade });
        // Before authentication, too: a URL that does not parse must not need a token to refuse.
        await expectRefused({ method: 'GET', path, upgrade, anonymous: true });
      }
    }
    // An absolute-form target whose host does not parse has no path, so Express would match no
    // route at all: the server answers it with the gateway's JSON before Express sees it.
    const broken = 'http://[::1/api/kernels';
    await expectRefused({ method: 'GET', path: broken });
    await expectRefused({ method: 'GET', path: broken, upgrade: true });
  });

  it('random channels upgrades (random kernel ids, sessions, %-escapes): 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        segmentArb,
        fc.option(queryArb, { nil: null }),
        fc.boolean(),
        async (id, q, anonymous) => {
          await expectRefused({
            method: 'GET',
            path: withQuery(`/api/kernels/${id}/channels`, q),
            upgrade: true,
            anonymous,
          });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('afterwards: the gateway answers GET /api, started no kernel and runs no sandbox', async () => {
    const res = await t.api('/api');
    expect(res.status).to.equal(200);
    expect(((await res.json()) as { version?: unknown }).version).to.be.a('string');
    expect(t.gw.kernels.count, 'no kernel was started').to.equal(0);
    expect(await t.gw.runtime.list(), 'no sandbox runs').to.deep.equal([]);
    expect(requests, 'bounded').to.be.at.most(500);
  });
});
