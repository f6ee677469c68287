/**
 * A sandbox's exit in words: the OOM kill first, then a backend's own reason (a pod evicted or
 * lost with its node) beside the exit code, which alone is what a Docker exit has.
 */
import { expect } from 'chai';
import { describeSandboxExit } from '../../../gateway/runtime/runtime.js';

describe('describeSandboxExit', () => {
  it('names an OOM kill whatever the code', () => {
    expect(describeSandboxExit({ exitCode: 137, oomKilled: true })).to.equal('OOM-killed');
  });

  it('gives the exit code, or says it is unknown', () => {
    expect(describeSandboxExit({ exitCode: 1, oomKilled: false })).to.equal('exit code 1');
    expect(describeSandboxExit({ exitCode: null, oomKilled: false })).to.equal('exit code unknown');
  });

  it("puts a backend's reason before the code", () => {
    expect(describeSandboxExit({ exitCode: null, oomKilled: false, reason: 'Evicted' })).to.equal(
      'Evicted, exit code unknown',
    );
  });
});
