/**
 * The checks of Pod Security Admission's `restricted` profile (Pod Security Standards, Kubernetes
 * 1.30+: baseline and restricted controls), applied to a PodSpec as the admission plugin would.
 * The kernels' namespace enforces this profile (deploy/kubernetes/00-namespaces.yaml), so a kernel
 * pod that fails one would be refused by the API server.
 */
import type { Container, PodSpec } from 'kubernetes-types/core/v1.js';

/** Volume types the restricted profile allows. */
const ALLOWED_VOLUMES = [
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
];

/** Every violation of the restricted profile in `spec` (empty: admitted). */
export function restrictedViolations(spec: PodSpec): string[] {
  const out: string[] = [];
  const psc = spec.securityContext ?? {};
  if (spec.hostNetwork === true || spec.hostPID === true || spec.hostIPC === true)
    out.push('host namespaces');
  for (const v of spec.volumes ?? []) {
    const types = Object.keys(v).filter((k) => k !== 'name');
    for (const t of types) if (!ALLOWED_VOLUMES.includes(t)) out.push(`volume ${v.name}: ${t}`);
  }
  const containers: Container[] = [...(spec.initContainers ?? []), ...spec.containers];
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    const who = `container ${c.name}`;
    if (sc.privileged === true) out.push(`${who}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${who}: allowPrivilegeEscalation`);
    if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) out.push(`${who}: runAsNonRoot`);
    if ((sc.runAsUser ?? psc.runAsUser) === 0) out.push(`${who}: runAsUser 0`);
    const seccomp = (sc.seccompProfile ?? psc.seccompProfile)?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`${who}: seccomp`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL'))
      out.push(`${who}: capabilities not dropped`);
    for (const cap of sc.capabilities?.add ?? [])
      if (cap !== 'NET_BIND_SERVICE') out.push(`${who}: adds ${cap}`);
    if (sc.procMount !== undefined && sc.procMount !== 'Default') out.push(`${who}: procMount`);
    const aa = (sc.appArmorProfile ?? psc.appArmorProfile)?.type;
    if (aa === 'Unconfined') out.push(`${who}: AppArmor unconfined`);
    for (const p of c.ports ?? []) if (p.hostPort !== undefined) out.push(`${who}: hostPort`);
  }
  if ((psc.sysctls ?? []).length > 0) out.push('sysctls');
  return out;
}
