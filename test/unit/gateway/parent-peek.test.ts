/** The iopub path's peeks: a status's execution_state without a parse, the parent's routing fields. */
import { expect } from 'chai';
import { peekExecutionState, peekParent } from '../../../gateway/channels/parent-peek.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Counts JSON.parse calls made while `fn` runs. */
function parses(fn: () => void): number {
  const parse = JSON.parse;
  let n = 0;
  JSON.parse = ((...a: Parameters<typeof JSON.parse>) => {
    n++;
    return parse(...a) as unknown;
  }) as typeof JSON.parse;
  try {
    fn();
  } finally {
    JSON.parse = parse;
  }
  return n;
}

describe('parent-peek', () => {
  it("reads jupyter_client's and compact status contents without parsing them", () => {
    for (const s of ['busy', 'idle', 'starting']) {
      let got: (string | undefined)[] = [];
      const n = parses(() => {
        got = [
          peekExecutionState(b(`{"execution_state": "${s}"}`), 1024),
          peekExecutionState(b(`{"execution_state":"${s}"}`), 1024),
        ];
      });
      expect(got).to.deep.equal([s, s]);
      expect(n, 'no JSON.parse').to.equal(0);
    }
  });

  it('parses any other status content, within the cap', () => {
    expect(peekExecutionState(b('{ "execution_state" : "idle", "x": 1 }'), 1024)).to.equal('idle');
    expect(peekExecutionState(b('{"execution_state": "dead"}'), 1024)).to.equal('dead');
    expect(peekExecutionState(b('{"execution_state": 1}'), 1024)).to.equal(undefined);
    expect(peekExecutionState(b('{"execution_state": "busy"'), 1024)).to.equal(undefined);
    expect(peekExecutionState(b('["execution_state", "busy"]'), 1024)).to.equal(undefined);
    expect(peekExecutionState(b('{}'), 1024)).to.equal(undefined);
    const big = b(`{"pad": "${'x'.repeat(100)}", "execution_state": "busy"}`);
    expect(peekExecutionState(big, 50), 'over the cap: not parsed').to.equal(undefined);
    // Non-ASCII bytes never match a known form by accident.
    expect(peekExecutionState(b('{"execution_state": "büsy"}'), 1024)).to.equal('büsy');
  });

  it('parses a parent header once however many ask, and keeps only string routing fields', () => {
    const parent = b('{"msg_id": "m1", "msg_type": "execute_request", "session": 7}');
    let first: ReturnType<typeof peekParent> = {};
    const n = parses(() => {
      first = peekParent(parent);
      peekParent(parent);
      peekParent(parent);
    });
    expect(n).to.equal(1);
    expect(first).to.deep.equal({ msg_id: 'm1', msg_type: 'execute_request' });
    expect(peekParent(b('{}'))).to.deep.equal({});
    expect(peekParent(b('not json'))).to.deep.equal({});
  });
});
