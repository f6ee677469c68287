import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../../gateway/base/config.js';

describe('gateway/config: egress', () => {
  it('defaults to the pypi and conda presets (the specification)', () => {
    expect(loadConfig({}, []).egressAllow).to.deep.equal(['pypi', 'conda']);
  });

  it('an empty AIDO_EGRESS_ALLOW means no egress, not the default', () => {
    expect(loadConfig({ AIDO_EGRESS_ALLOW: '' }, []).egressAllow).to.deep.equal([]);
    expect(loadConfig({}, ['--egress-allow=']).egressAllow).to.deep.equal([]);
  });

  it('refuses a bad entry at start-up, naming it', () => {
    expect(() => loadConfig({ AIDO_EGRESS_ALLOW: 'pypi,https://x/simple' }, [])).to.throw(
      ConfigError,
      /AIDO_EGRESS_ALLOW \/ --egress-allow: "https:\/\/x\/simple" is neither a preset/,
    );
  });

  it('/pkgs must fit in the memory limit beside /tmp, /workspace and /dev/shm, only with egress on', () => {
    const env = { AIDO_MEMORY_LIMIT: '256m', AIDO_PIP_SIZE: '100m' };
    expect(() => loadConfig(env, [])).to.throw(
      ConfigError,
      /AIDO_PIP_SIZE.*must be below the memory limit/,
    );
    expect(loadConfig({ ...env, AIDO_EGRESS_ALLOW: '' }, []).pipSizeBytes).to.equal(
      100 * 1024 ** 2,
    );
  });
});
