/** The configuration table: defaults, env and flags, fail-closed validation naming every bad key. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../../gateway/base/config.js';

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

  it('refuses a token shorter than 16 characters', () => {
    expect(() => loadConfig({ AIDO_AUTH_TOKEN: 'short-token' }, [])).to.throw(
      ConfigError,
      /AIDO_AUTH_TOKEN: too short \(11 characters; at least 16/,
    );
    expect(loadConfig({ AIDO_AUTH_TOKEN: 'sixteen-chars-ok' }, []).authToken).to.equal(
      'sixteen-chars-ok',
    );
  });

  it('refuses a token on the command line (ps shows it to every local user)', () => {
    expect(() => loadConfig({}, ['--auth-token', 'a-long-enough-token-1234'])).to.throw(
      ConfigError,
      /--auth-token: refused.*AIDO_AUTH_TOKEN or --auth-token-file/,
    );
  });

  it('reads the token from AIDO_AUTH_TOKEN_FILE (first line, trimmed), never with AIDO_AUTH_TOKEN too', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'aido-cfg-'));
    try {
      const file = path.join(dir, 'token');
      writeFileSync(file, '  a-token-from-a-file-0123  \nignored\n', { mode: 0o600 });
      expect(loadConfig({ AIDO_AUTH_TOKEN_FILE: file }, []).authToken).to.equal(
        'a-token-from-a-file-0123',
      );
      expect(loadConfig({}, ['--auth-token-file', file]).authToken).to.equal(
        'a-token-from-a-file-0123',
      );
      expect(() =>
        loadConfig({ AIDO_AUTH_TOKEN_FILE: file, AIDO_AUTH_TOKEN: 'another-token-0123456' }, []),
      ).to.throw(ConfigError, /both set/);
      expect(() => loadConfig({ AIDO_AUTH_TOKEN_FILE: path.join(dir, 'missing') }, [])).to.throw(
        ConfigError,
        /cannot read/,
      );
      writeFileSync(file, 'short\n');
      expect(() => loadConfig({ AIDO_AUTH_TOKEN_FILE: file }, [])).to.throw(
        ConfigError,
        /too short/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs sandboxes as a high uid by default, configurable, never root', () => {
    expect(loadConfig({}, []).sandboxUid).to.equal(2_000_000_000);
    expect(loadConfig({ AIDO_SANDBOX_UID: '1500000000' }, []).sandboxUid).to.equal(1_500_000_000);
    expect(() => loadConfig({ AIDO_SANDBOX_UID: '0' }, [])).to.throw(ConfigError, /SANDBOX_UID/);
  });
});
