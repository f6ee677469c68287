import { expect } from 'chai';
import {
  DEFAULT_EGRESS_ALLOW,
  EgressPolicyError,
  checkAddress,
  checkTarget,
  compileEgressPolicy,
  describeEgressPolicy,
  isTarget,
  parseConnectTarget,
  parseHttpTarget,
  type EgressTarget,
  type EgressVerdict,
} from '../../../security/egress-policy.js';

const facts = { localAddresses: new Set(['93.184.216.34', '2001:4860::7']) };

function target(v: EgressTarget | EgressVerdict): EgressTarget {
  if (!isTarget(v)) throw new Error(`expected a target, got ${JSON.stringify(v)}`);
  return v;
}

function reason(v: EgressVerdict | EgressTarget): string {
  if (isTarget(v) || v.allowed) throw new Error(`expected a refusal, got ${JSON.stringify(v)}`);
  return v.reason;
}

describe('security/egress-policy', () => {
  const defaults = compileEgressPolicy(DEFAULT_EGRESS_ALLOW);

  it('the default is the pypi and conda presets, HTTPS only', () => {
    expect(describeEgressPolicy(defaults)).to.deep.equal([
      'pypi.org:443 (https)',
      'files.pythonhosted.org:443 (https)',
      'conda.anaconda.org:443 (https)',
      'repo.anaconda.com:443 (https)',
    ]);
    expect(checkTarget(defaults, target(parseConnectTarget('pypi.org:443')))).to.deep.equal({
      allowed: true,
    });
    expect(checkTarget(defaults, target(parseConnectTarget('PyPI.org.:443'))).allowed).to.equal(
      true,
    );
  });

  it('an empty list allows nothing', () => {
    const none = compileEgressPolicy([]);
    expect(none.entries).to.deep.equal([]);
    expect(reason(checkTarget(none, target(parseConnectTarget('pypi.org:443'))))).to.equal(
      "egress to pypi.org:443 is not allowed by the gateway's policy: it is not in the allow-list",
    );
  });

  it('a bare host allows CONNECT to 443 only; plain HTTP needs an entry with the port', () => {
    expect(checkTarget(defaults, target(parseConnectTarget('pypi.org:8443'))).allowed).to.equal(
      false,
    );
    expect(
      reason(checkTarget(defaults, target(parseHttpTarget('http://pypi.org/simple/')))),
    ).to.match(
      /pypi\.org:80 is not allowed by the gateway's policy: the allow-list has this host for HTTPS only/,
    );
    const p = compileEgressPolicy(['mirror.example:8080']);
    expect(
      checkTarget(p, target(parseHttpTarget('http://mirror.example:8080/simple/'))).allowed,
    ).to.equal(true);
    expect(checkTarget(p, target(parseConnectTarget('mirror.example:8080'))).allowed).to.equal(
      true,
    );
    expect(
      checkTarget(p, target(parseHttpTarget('http://mirror.example/simple/'))).allowed,
    ).to.equal(false);
  });

  it('matches names exactly: no subdomains, no other names, no addresses for a name', () => {
    for (const t of [
      'evil.pypi.org:443',
      'pypi.org.evil.example:443',
      'pypi.or:443',
      '151.101.0.223:443',
    ]) {
      expect(checkTarget(defaults, target(parseConnectTarget(t))).allowed, t).to.equal(false);
    }
  });

  it('refuses targets that are not a host: paths, userinfo, other schemes, numbers as names', () => {
    expect(reason(parseHttpTarget('/simple/'))).to.match(/needs an absolute http:\/\/ URL/);
    expect(reason(parseHttpTarget('https://pypi.org/'))).to.match(/only http:\/\/ is forwarded/);
    expect(reason(parseHttpTarget('unix:///var/run/docker.sock'))).to.match(/only http:\/\//);
    expect(reason(parseHttpTarget('http://%2Fvar%2Frun%2Fdocker.sock/containers/json'))).to.match(
      /is not allowed by the gateway's policy/,
    );
    // got's unix-socket URL form is a plain host "unix" here: not listed, so refused.
    expect(
      reason(checkTarget(defaults, target(parseHttpTarget('http://unix:/var/run/docker.sock:/x')))),
    ).to.match(/unix:80 is not allowed by the gateway's policy/);
    expect(reason(parseHttpTarget('http://user:pw@pypi.org/'))).to.match(/does not name a host/);
    expect(reason(parseConnectTarget('2130706433:443'))).to.match(/not host:port/);
    expect(reason(parseConnectTarget('127.1:443'))).to.match(/not host:port/);
    expect(reason(parseConnectTarget('pypi.org'))).to.match(/not host:port/);
    expect(reason(parseConnectTarget('[fe80::1%eth0]:443'))).to.match(/not host:port/);
    expect(reason(parseConnectTarget('pypi.org:0'))).to.match(/not host:port/);
    // Sandbox text in a refusal is printable ASCII only (it goes into a status line).
    expect(reason(parseConnectTarget('a\r\nX-Evil: 1'))).not.to.match(/[\r\n]/);
  });

  it('refuses non-public addresses a listed name resolves to', () => {
    const p = compileEgressPolicy(['mirror.example']);
    const t = target(parseConnectTarget('mirror.example:443'));
    const cases: [string, RegExp][] = [
      ['127.0.0.1', /resolves to 127\.0\.0\.1, a loopback address/],
      ['::1', /a loopback address/],
      ['::ffff:127.0.0.1', /resolves to 127\.0\.0\.1, a loopback/],
      ['169.254.169.254', /a linkLocal address/],
      ['10.0.0.1', /a private address/],
      ['172.16.5.4', /a private address/],
      ['192.168.1.1', /a private address/],
      ['100.64.0.1', /carrierGradeNat/],
      ['fd00::1', /uniqueLocal/],
      ['0.0.0.0', /unspecified/],
      ['224.0.0.1', /multicast/],
      ['64:ff9b::a00:1', /rfc6052/],
      ['93.184.216.34', /an address of the gateway's own host/],
    ];
    for (const [addr, why] of cases) {
      expect(reason(checkAddress(p, t, addr, facts)), addr).to.match(why);
    }
    expect(checkAddress(p, t, '151.101.0.223', facts)).to.deep.equal({ allowed: true });
    expect(checkAddress(p, t, '2a04:4e42::223', facts)).to.deep.equal({ allowed: true });
  });

  it('an entry naming an exact address:port is the only way to a non-public address', () => {
    const p = compileEgressPolicy(['127.0.0.1:8080', '10.0.0.5', 'localhost:8081']);
    const mirror = target(parseHttpTarget('http://127.0.0.1:8080/simple/'));
    expect(checkTarget(p, mirror).allowed).to.equal(true);
    expect(checkAddress(p, mirror, '127.0.0.1', facts).allowed).to.equal(true);
    // Another port of the same address: not named.
    const other = target(parseHttpTarget('http://127.0.0.1:8082/'));
    expect(checkTarget(p, other).allowed).to.equal(false);
    expect(checkAddress(p, other, '127.0.0.1', facts).allowed).to.equal(false);
    // A literal without a port does not name a port: a private address stays refused.
    const lan = target(parseConnectTarget('10.0.0.5:443'));
    expect(checkTarget(p, lan).allowed).to.equal(true);
    expect(checkAddress(p, lan, '10.0.0.5', facts).allowed).to.equal(false);
    // A listed name that resolves to loopback is refused (a name is not an address).
    const local = target(parseHttpTarget('http://localhost:8081/'));
    expect(checkTarget(p, local).allowed).to.equal(true);
    expect(reason(checkAddress(p, local, '127.0.0.1', facts))).to.match(/loopback/);
  });

  it('refuses bad entries, naming each', () => {
    expect(() => compileEgressPolicy(['pypi', 'http://x', 'a:99999', ' '])).to.throw(
      EgressPolicyError,
      /"http:\/\/x".*"a:99999": port must be 1\.\.65535.*" "/,
    );
    expect(compileEgressPolicy(['pypi', 'pypi.org', '[::1]:3141']).entries).to.deep.equal([
      { host: 'pypi.org', port: null, literal: false },
      { host: 'files.pythonhosted.org', port: null, literal: false },
      { host: '::1', port: 3141, literal: true },
    ]);
  });
});
