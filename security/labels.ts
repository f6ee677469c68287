/**
 * The label keys every sandbox carries, on Docker containers and Kubernetes pods alike: one
 * definition, so that both backends (and the manifests that select kernel pods) agree.
 */

/** Marks a kernel sandbox of this gateway (value `1`); panic and clean-up select on it. */
export const LABEL_APP = 'org.aido.kernel-gateway';
/** The gateway's state dir: scopes ownership to one gateway installation. */
export const LABEL_STATE_DIR = 'org.aido.kernel-gateway.state-dir';
/** The kernel the sandbox was created for, or {@link POOL_KERNEL_ID} for a warm-pool sandbox. */
export const LABEL_KERNEL_ID = 'org.aido.kernel-gateway.kernel-id';
/** The name of the sandbox's kernel-directory volume. */
export const LABEL_KERNEL_VOLUME = 'org.aido.kernel-gateway.kernel-volume';
/** The gateway instance that created the sandbox (one live instance per state dir: the lock). */
export const LABEL_INSTANCE = 'org.aido.kernel-gateway.instance';
/** The {@link LABEL_KERNEL_ID} value of a warm-pool sandbox not yet bound to a kernel. */
export const POOL_KERNEL_ID = 'pool';
