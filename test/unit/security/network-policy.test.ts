import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import {
  NetworkPolicyError,
  defaultNetworkPolicyPath,
  dockerNetworkModeFor,
  loadNetworkPolicy,
  parseNetworkPolicy,
  sandboxNetworkOf,
} from '../../../security/network-policy.js';
import { policyFrom } from '../../../gateway/server.js';
import { loadConfig } from '../../../gateway/base/config.js';
import { EGRESS_PRESETS } from '../../../security/egress-policy.js';
import {
  DEFAULT_NETWORK,
  DEFAULT_POLICY,
  EGRESS_RELAY_PORT,
  EGRESS_SOCKET_NAME,
  KERNEL_DIR_IN_CONTAINER,
  buildContainerSpec,
} from '../../../security/policy.js';

function committed(): Record<string, unknown> {
  return JSON.parse(readFileSync(defaultNetworkPolicyPath(), 'utf8')) as Record<string, unknown>;
}

describe('security/network-policy', () => {
  it('loads the committed default-deny policy', () => {
    const p = loadNetworkPolicy();
    expect(p.mode).to.equal('none');
    expect(p.egress).to.deep.equal({ default: 'deny', allow: [] });
    expect(p.ingress).to.deep.equal({ default: 'deny', allow: [] });
    expect(p.interContainer).to.equal('deny');
    expect(p.hostAccess).to.equal('deny');
  });

  it('describes the egress proxy the gateway runs: its relay, socket, default allow-list and presets', () => {
    const p = loadNetworkPolicy();
    expect(p.egressProxy.relay).to.equal(`127.0.0.1:${EGRESS_RELAY_PORT}`);
    expect(p.egressProxy.socket).to.equal(`${KERNEL_DIR_IN_CONTAINER}/${EGRESS_SOCKET_NAME}`);
    expect(p.egressProxy.defaultAllow).to.deep.equal(loadConfig({}, []).egressAllow);
    expect(p.egressProxy.presets).to.deep.equal(EGRESS_PRESETS);
  });

  it('agrees with buildContainerSpec: egress denied means network none, no ports, no host resolver', () => {
    const p = loadNetworkPolicy();
    const spec = buildContainerSpec({
      policy: DEFAULT_POLICY,
      image: 'aido-kernel:latest',
      kernelId: 'k1',
      kernelVolume: 'aido-kd-k1',
      connectionFile: '{}',
      uid: DEFAULT_POLICY.uidRange.first,
      labels: {},
      env: {},
      name: 'aido-k-k1',
      hostHasAppArmor: false,
    });
    expect(spec.HostConfig?.NetworkMode).to.equal(dockerNetworkModeFor(p));
    expect(spec.NetworkDisabled).to.equal(true);
    expect(spec.ExposedPorts).to.equal(undefined);
    expect(spec.HostConfig?.PortBindings).to.equal(undefined);
    expect(spec.HostConfig?.PublishAllPorts).to.equal(undefined);
    expect(spec.HostConfig?.ExtraHosts).to.equal(undefined);
    expect(spec.HostConfig?.Links).to.equal(undefined);
    expect(spec.HostConfig?.Dns).to.deep.equal([p.dns.resolver]);
  });

  it('drives the sandboxes: the gateway policy takes its network from the file, the default agrees', () => {
    const p = loadNetworkPolicy();
    expect(sandboxNetworkOf(p)).to.deep.equal(DEFAULT_NETWORK);
    const fromFile = policyFrom(loadConfig({}, []));
    expect(fromFile.network).to.deep.equal({ mode: p.mode, dnsResolver: p.dns.resolver });
  });

  it('refuses direct egress entries, another network mode and a bad default allow-list', () => {
    expect(() =>
      parseNetworkPolicy({ ...committed(), egress: { default: 'deny', allow: ['pypi.org'] } }),
    ).to.throw(NetworkPolicyError, /egress\.allow/);
    expect(() => parseNetworkPolicy({ ...committed(), mode: 'bridge' })).to.throw(
      NetworkPolicyError,
      /mode/,
    );
    const proxy = committed().egressProxy as Record<string, unknown>;
    expect(() =>
      parseNetworkPolicy({
        ...committed(),
        egressProxy: { ...proxy, defaultAllow: ['https://pypi.org/simple'] },
      }),
    ).to.throw(NetworkPolicyError, /egressProxy\.defaultAllow: "https:\/\/pypi\.org\/simple"/);
  });

  it('fails closed on allow-by-default, unknown keys and bad JSON', () => {
    expect(() => parseNetworkPolicy({ ...committed(), interContainer: 'allow' })).to.throw(
      NetworkPolicyError,
      /interContainer/,
    );
    expect(() =>
      parseNetworkPolicy({ ...committed(), egress: { default: 'allow', allow: [] } }),
    ).to.throw(NetworkPolicyError, /egress\.default/);
    expect(() => parseNetworkPolicy({ ...committed(), hostNetwork: true })).to.throw(
      NetworkPolicyError,
      /hostNetwork/,
    );
    expect(() => loadNetworkPolicy('/nonexistent/network-policy.json')).to.throw(
      NetworkPolicyError,
      /cannot read network policy/,
    );
  });
});
