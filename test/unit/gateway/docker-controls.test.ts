/**
 * The Docker backend's reading of SecurityOpt into neutral controls: what the health report says is
 * in force on live sandboxes rests on it, so an unconfined or explicitly disabled option must not
 * read as a control in force.
 */
import { expect } from 'chai';
import { controlsOf } from '../../../gateway/runtime/docker-runtime.js';

describe('DockerRuntime: SecurityOpt read as neutral controls', () => {
  it('reads the options the policy sets', () => {
    expect(
      controlsOf([
        'no-new-privileges:true',
        'seccomp={"defaultAction":"SCMP_ACT_ERRNO"}',
        'apparmor=aido-kernel',
      ]),
    ).to.deep.equal({ seccomp: 'aido', noNewPrivileges: true, appArmor: 'aido-kernel' });
  });

  it('reads no options as the runtime default profile and no other control', () => {
    expect(controlsOf([])).to.deep.equal({
      seccomp: 'default',
      noNewPrivileges: false,
      appArmor: null,
    });
  });

  it('does not count seccomp=unconfined or no-new-privileges:false as in force', () => {
    expect(controlsOf(['seccomp=unconfined', 'no-new-privileges:false'])).to.deep.equal({
      seccomp: 'none',
      noNewPrivileges: false,
      appArmor: null,
    });
    expect(controlsOf(['no-new-privileges']).noNewPrivileges).to.equal(true);
  });
});
