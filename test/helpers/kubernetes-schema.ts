/**
 * Validates Kubernetes objects against the API's schemas as the kubernetes-models package ships
 * them (generated from the Kubernetes 1.34 OpenAPI document): types, enums, formats and required
 * fields. It does not refuse unknown fields; the compiler does that, since security/pod-spec.ts and
 * security/k8s-manifests.ts are typed with the Kubernetes 1.30 API types.
 */
import { ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { RuntimeClass } from 'kubernetes-models/node.k8s.io/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';

interface Validating {
  validate(): void;
}
type ModelClass = new (data: never) => Validating;

const MODELS: Record<string, ModelClass> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Pod': Pod,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/Deployment': Deployment,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'node.k8s.io/v1/RuntimeClass': RuntimeClass,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
};

/** The `apiVersion/kind` of an object, e.g. `apps/v1/Deployment`. */
export function typeOf(obj: unknown): string {
  const o = obj as { apiVersion?: unknown; kind?: unknown };
  return `${String(o.apiVersion)}/${String(o.kind)}`;
}

/** True when the schemas know this kind (API objects; not e.g. a KubeletConfiguration). */
export function isApiObject(obj: unknown): boolean {
  return Object.hasOwn(MODELS, typeOf(obj));
}

/** Throws the schema's errors for `obj`; an unknown apiVersion/kind is an error too. */
export function validateObject(obj: unknown): void {
  const model = MODELS[typeOf(obj)];
  if (!model) throw new Error(`no schema for ${typeOf(obj)}`);
  // The models copy the plain object; validate() throws with every schema error.
  new model(structuredClone(obj) as never).validate();
}
