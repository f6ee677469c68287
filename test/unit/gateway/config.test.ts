/** The configuration table: defaults, env and flags, fail-closed validation naming every bad key. */
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../../gateway/config.js';

describe('config', () => {
  it('has the documented defaults and generates a token when none is set', () => {
    const c = loadConfig({}, []);
    expect(c.ip).to.equal('127.0.0.1');
    expect(c.port).to.equal(8888);
    expect(c.execTimeoutS).to.equal(30);
    expect(c.memoryBytes).to.equal(512 * 1024 * 1024);
    expect(c.cpus).to.equal(0.5);
    expect(c.pids).to.equal(50);
    expect(c.nofile).to.equal(1024);
    expect(c.workspaceSizeBytes).to.equal(100 * 1024 * 1024);
    expect(c.authToken).to.match(/^[0-9a-f]{48}$/);
    expect(loadConfig({}, []).authToken, 'fresh per start').not.to.equal(c.authToken);
  });

  it('reads env and lets flags win', () => {
    const c = loadConfig(
      { AIDO_PORT: '9000', AIDO_MEMORY_LIMIT: '1g', AIDO_ALLOW_ORIGIN: 'http://a, http://b' },
      ['--port', '9001', '--exec-timeout=5'],
    );
    expect(c.port).to.equal(9001);
    expect(c.execTimeoutS).to.equal(5);
    expect(c.memoryBytes).to.equal(1024 ** 3);
    expect(c.allowOrigin).to.deep.equal(['http://a', 'http://b']);
  });

  it('names every bad key at once', () => {
    let err: unknown;
    try {
      loadConfig({ AIDO_PORT: 'eighty', AIDO_CPU_LIMIT: '-1', AIDO_SECCOMP: 'maybe' }, ['--nope']);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(ConfigError);
    const msg = (err as ConfigError).message;
    for (const key of ['AIDO_PORT', 'AIDO_CPU_LIMIT', 'AIDO_SECCOMP', '--nope'])
      expect(msg).to.include(key);
    expect((err as ConfigError).problems).to.have.length(4);
  });

  it('refuses a state dir too long for unix socket paths', () => {
    expect(() => loadConfig({ AIDO_STATE_DIR: `/tmp/${'x'.repeat(80)}` }, [])).to.throw(
      ConfigError,
      /unix socket/,
    );
  });
});
