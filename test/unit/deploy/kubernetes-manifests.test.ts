import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { Deployment, DaemonSet } from 'kubernetes-types/apps/v1.js';
import type { NetworkPolicy } from 'kubernetes-types/networking/v1.js';
import type { Pod } from 'kubernetes-types/core/v1.js';
import type { Role, RoleBinding } from 'kubernetes-types/rbac/v1.js';
import { parseAllDocuments } from 'yaml';
import { SECCOMP_PROFILE_PATH } from '../../../security/generate-seccomp.js';
import {
  DEPLOY_DIR,
  PARITY_DOC,
  committedManifests,
  renderManifestFile,
  renderParityDoc,
} from '../../../security/generate-k8s.js';
import { GATEWAY_POD_LABELS, SECCOMP_PROFILE_FILE } from '../../../security/k8s-manifests.js';
import {
  GATEWAY_NAMESPACE,
  KERNEL_NAMESPACE,
  KERNEL_POD_SELECTOR,
  KERNEL_TCP_PORTS,
} from '../../../security/pod-spec.js';
import { DEFAULT_LIMITS } from '../../../security/policy.js';
import { isApiObject, typeOf, validateObject } from '../../helpers/kubernetes-schema.js';
import { restrictedViolations } from '../../helpers/pod-security.js';

const REGENERATE = 'run `npm run k8s` and commit the result';

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.split(path.sep).join('/'))
    .sort();
}

let parsed: { file: string; obj: Record<string, unknown> }[] | undefined;

/** Every object of the committed files, parsed from the YAML on disk (once). */
function committedObjects(): { file: string; obj: Record<string, unknown> }[] {
  parsed ??= yamlFiles(DEPLOY_DIR).flatMap((file) =>
    parseAllDocuments(readFileSync(path.join(DEPLOY_DIR, file), 'utf8')).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.join('; ')}`);
      return { file, obj: doc.toJS() as Record<string, unknown> };
    }),
  );
  return parsed;
}

function find(kind: string, name: string): unknown {
  const hit = committedObjects().find(
    ({ obj }) => obj.kind === kind && (obj.metadata as { name?: string }).name === name,
  );
  if (!hit) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return hit.obj;
}

describe('deploy/kubernetes', () => {
  it(`the committed files are the generated ones (${REGENERATE})`, () => {
    const generated = committedManifests();
    expect(yamlFiles(DEPLOY_DIR)).to.deep.equal(generated.map((f) => f.path).sort());
    for (const file of generated) {
      const onDisk = readFileSync(path.join(DEPLOY_DIR, file.path), 'utf8');
      expect(onDisk, file.path).to.equal(renderManifestFile(file));
    }
  });

  it(`docs/kubernetes-parity.md is the generated table (${REGENERATE})`, () => {
    expect(readFileSync(PARITY_DOC, 'utf8')).to.equal(renderParityDoc());
  });

  it('every API object validates against the Kubernetes API schema', () => {
    const objects = committedObjects();
    expect(objects.length).to.be.greaterThan(10);
    const kinds = new Set<string>();
    for (const { file, obj } of objects) {
      if (obj.kind === 'KubeletConfiguration') continue;
      expect(isApiObject(obj), `${file}: ${typeOf(obj)}`).to.equal(true);
      expect(
        () => {
          validateObject(obj);
        },
        `${file}: ${typeOf(obj)}`,
      ).to.not.throw();
      kinds.add(typeOf(obj));
    }
    expect([...kinds].sort()).to.deep.equal([
      'apps/v1/DaemonSet',
      'apps/v1/Deployment',
      'networking.k8s.io/v1/NetworkPolicy',
      'node.k8s.io/v1/RuntimeClass',
      'rbac.authorization.k8s.io/v1/Role',
      'rbac.authorization.k8s.io/v1/RoleBinding',
      'v1/ConfigMap',
      'v1/Namespace',
      'v1/Pod',
      'v1/Secret',
      'v1/Service',
      'v1/ServiceAccount',
    ]);
  });

  it("kernel and gateway pods pass Pod Security's restricted profile, which their namespaces enforce", () => {
    const pod = find('Pod', 'aido-k-6f1d2c3b-a1b2c3d4e5f6') as Pod;
    expect(restrictedViolations(pod.spec!)).to.deep.equal([]);
    const gw = find('Deployment', 'aido-kernel-gateway') as Deployment;
    expect(restrictedViolations(gw.spec!.template.spec!)).to.deep.equal([]);
    for (const ns of [KERNEL_NAMESPACE, GATEWAY_NAMESPACE]) {
      const labels = (find('Namespace', ns) as { metadata: { labels: Record<string, string> } })
        .metadata.labels;
      expect(labels['pod-security.kubernetes.io/enforce'], ns).to.equal('restricted');
    }
    // The check can fail: the node installer's hostPath is not allowed under restricted.
    const installer = find('DaemonSet', 'aido-seccomp-installer') as DaemonSet;
    expect(restrictedViolations(installer.spec!.template.spec!)).to.include(
      'volume host: hostPath',
    );
  });

  it('kernel pods: no egress, ingress only from the gateway pods to the kernel ports', () => {
    const deny = find('NetworkPolicy', 'aido-kernels-default-deny') as NetworkPolicy;
    expect(deny.metadata?.namespace).to.equal(KERNEL_NAMESPACE);
    expect(deny.spec).to.deep.equal({ podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
    const allow = find('NetworkPolicy', 'aido-kernels-from-gateway') as NetworkPolicy;
    expect(allow.spec?.podSelector.matchLabels).to.deep.equal(KERNEL_POD_SELECTOR);
    expect(allow.spec?.policyTypes).to.deep.equal(['Ingress']);
    expect(allow.spec?.egress).to.equal(undefined);
    expect(allow.spec?.ingress).to.have.length(1);
    const rule = allow.spec!.ingress![0]!;
    expect(rule.from).to.deep.equal([
      {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': GATEWAY_NAMESPACE } },
        podSelector: { matchLabels: GATEWAY_POD_LABELS },
      },
    ]);
    expect(rule.ports?.map((p) => p.port)).to.deep.equal(Object.values(KERNEL_TCP_PORTS));
    const pod = find('Pod', 'aido-k-6f1d2c3b-a1b2c3d4e5f6') as Pod;
    for (const [k, v] of Object.entries(KERNEL_POD_SELECTOR))
      expect(pod.metadata?.labels?.[k]).to.equal(v);
    const gw = find('Deployment', 'aido-kernel-gateway') as Deployment;
    expect(gw.spec?.template.metadata?.labels).to.deep.equal(GATEWAY_POD_LABELS);
  });

  it("the gateway may touch pods, their exec and secrets in the kernels' namespace only", () => {
    const role = find('Role', 'aido-kernel-manager') as Role;
    expect(role.metadata?.namespace).to.equal(KERNEL_NAMESPACE);
    const resources = (role.rules ?? []).flatMap((r) => r.resources ?? []);
    expect(resources.sort()).to.deep.equal(['pods', 'pods/exec', 'secrets']);
    for (const r of role.rules ?? []) {
      expect(r.apiGroups).to.deep.equal(['']);
      expect(r.verbs).to.not.include('*');
      expect(r.verbs).to.not.include('update');
    }
    const binding = find('RoleBinding', 'aido-kernel-manager') as RoleBinding;
    expect(binding.subjects).to.deep.equal([
      { kind: 'ServiceAccount', name: 'aido-kernel-gateway', namespace: GATEWAY_NAMESPACE },
    ]);
    const kinds = committedObjects().map(({ obj }) => obj.kind);
    expect(kinds).to.not.include('ClusterRole');
    expect(kinds).to.not.include('ClusterRoleBinding');
  });

  it('the nodes get the committed seccomp profile and the pids limit of the policy', () => {
    const cm = find('ConfigMap', 'aido-seccomp-profile') as { data: Record<string, string> };
    expect(cm.data[path.basename(SECCOMP_PROFILE_FILE)]).to.equal(
      readFileSync(SECCOMP_PROFILE_PATH, 'utf8'),
    );
    const installer = find('DaemonSet', 'aido-seccomp-installer') as DaemonSet;
    const host = installer.spec?.template.spec?.volumes?.find((v) => v.name === 'host');
    expect(host?.hostPath?.path).to.equal(path.dirname(SECCOMP_PROFILE_FILE));
    const kubelet = committedObjects().find(({ obj }) => obj.kind === 'KubeletConfiguration');
    expect(kubelet?.obj).to.deep.equal({
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      podPidsLimit: DEFAULT_LIMITS.pids,
      failSwapOn: true,
    });
  });
});
