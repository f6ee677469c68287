import { expect } from 'chai';
import { GatewayError } from '../../../gateway/base/errors.js';
import { KernelStartBody } from '../../../gateway/http/http-api.js';
import { parseBody } from '../../../gateway/http/request-body.js';
import { SessionCreateBody, SessionPatchBody } from '../../../gateway/http/sessions.js';

/** The message of the 400 a body gets, or undefined when it parses. */
function refusal(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (err) {
    expect(err).to.be.instanceOf(GatewayError).with.property('code', 'BAD_REQUEST');
    return (err as GatewayError).message;
  }
}

/** Each body is refused with its message. */
function expectRefusals(schema: Parameters<typeof parseBody>[0], cases: [unknown, string][]): void {
  for (const [body, message] of cases)
    expect(
      refusal(() => parseBody(schema, body)),
      JSON.stringify(body),
    ).to.equal(message);
}

describe('request bodies (one zod parser for every route)', () => {
  it('POST /api/kernels: the typed fields, with the messages Jupyter routes have always given', () => {
    const id = '0123abcd-0000-0000-0000-0000000000ff';
    expect(parseBody(KernelStartBody, undefined)).to.deep.equal({});
    expect(
      parseBody(KernelStartBody, { name: 'python3', env: { A: 1 }, kernel_id: id, path: 'x' }),
    ).to.deep.equal({ name: 'python3', env: { A: 1 }, kernel_id: id });
    expectRefusals(KernelStartBody, [
      [[], 'the request body must be a JSON object'],
      ['x', 'the request body must be a JSON object'],
      [{ name: 5 }, '"name" must be a string'],
      [{ env: ['x'] }, '"env" must be an object of strings'],
      [{ env: 'A=1' }, '"env" must be an object of strings'],
      [{ kernel_id: 'nope' }, '"kernel_id" must be a UUID'],
      [{ kernel_id: 7 }, '"kernel_id" must be a UUID'],
    ]);
  });

  it('POST /api/sessions: path and type required, legacy {notebook: {path}}, a kernel reference', () => {
    expect(parseBody(SessionCreateBody, { path: 'a.ipynb', type: 'notebook' })).to.deep.equal({
      path: 'a.ipynb',
      type: 'notebook',
      name: '',
      kernel: {},
    });
    expect(
      parseBody(SessionCreateBody, { notebook: { path: 'b.ipynb' }, kernel: { name: 'python3' } }),
    ).to.deep.equal({ path: 'b.ipynb', type: 'notebook', name: '', kernel: { name: 'python3' } });
    expectRefusals(SessionCreateBody, [
      [{ type: 'notebook' }, '"path" is required'],
      [{ path: 'a' }, '"type" is required'],
      [{ path: 5, type: 'notebook' }, '"path" must be a string'],
      [{ path: 'a', type: 'notebook', kernel: 'k' }, '"kernel" must be an object'],
      [{ path: 'a', type: 'notebook', kernel: { id: 1 } }, '"kernel.id" must be a string'],
      [[1], 'the request body must be a JSON object'],
    ]);
  });

  it('PATCH /api/sessions/{id}: every field optional, null as absent', () => {
    expect(parseBody(SessionPatchBody, { name: null, path: 'c' })).to.deep.include({
      path: 'c',
      name: undefined,
      kernel: {},
    });
    expect(refusal(() => parseBody(SessionPatchBody, { type: 3 }))).to.equal(
      '"type" must be a string',
    );
  });

  it('with a name, lists every problem with its field', () => {
    expect(refusal(() => parseBody(SessionPatchBody, { type: 3, name: 4 }, 'patch'))).to.equal(
      'invalid patch request: name: "name" must be a string; type: "type" must be a string',
    );
  });
});
