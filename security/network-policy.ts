/**
 * The sandbox network policy (`security/network-policy.json`): default deny in every direction.
 * This module loads it, validates it with zod (fail closed: an unknown key or a value we cannot
 * enforce is an error), and says which Docker network mode enforces it.
 *
 * @packageDocumentation
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

const deny = z.literal('deny');

const mirror = z.strictObject({
  /** A package index base URL, e.g. a PyPI mirror. */
  url: z.url({ protocol: /^https$/ }),
  /** What it serves (for the health report). */
  purpose: z.string().min(1),
});

const schema = z
  .strictObject({
    $comment: z.string().optional(),
    version: z.literal(1),
    mode: z.enum(['none', 'egress-proxy']),
    egress: z.strictObject({ default: deny, allow: z.array(z.string()).max(0) }),
    ingress: z.strictObject({ default: deny, allow: z.array(z.string()).max(0) }),
    interContainer: deny,
    hostAccess: deny,
    dns: z.strictObject({ resolver: z.literal('127.0.0.1'), hideHostResolver: z.literal(true) }),
    mirrors: z.array(mirror),
    egressProxy: z.null(),
    notes: z.array(z.string()).optional(),
  })
  .superRefine((p, ctx) => {
    if (p.mode === 'egress-proxy' || p.mirrors.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: p.mode === 'egress-proxy' ? ['mode'] : ['mirrors'],
        message: 'allow-listed egress needs the egress proxy, which is not implemented yet',
      });
    }
  });

/** The validated network policy. */
export type NetworkPolicy = z.infer<typeof schema>;

/** A network policy file that is malformed or asks for something we cannot enforce. */
export class NetworkPolicyError extends Error {
  override readonly name = 'NetworkPolicyError';
  /** Stable code for the gateway to map. */
  readonly code = 'INVALID_NETWORK_POLICY';
}

/**
 * Where the policy file lives: next to this module when run from source (tsx), or in the source
 * tree's `security/` when run from `dist/security/`.
 */
export function defaultNetworkPolicyPath(): string {
  const beside = fileURLToPath(new URL('./network-policy.json', import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL('../../security/network-policy.json', import.meta.url));
}

/**
 * Validates parsed JSON as a {@link NetworkPolicy}.
 * @throws {@link NetworkPolicyError} listing every problem with its path.
 */
export function parseNetworkPolicy(value: unknown): NetworkPolicy {
  const result = schema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map(
      (i) => `${i.path.join('.') || '(root)'}: ${i.message}`,
    );
    throw new NetworkPolicyError(`invalid network policy: ${problems.join('; ')}`);
  }
  return result.data;
}

/**
 * Reads and validates the policy file.
 * @throws {@link NetworkPolicyError} when the file is unreadable, not JSON, or invalid.
 */
export function loadNetworkPolicy(file: string = defaultNetworkPolicyPath()): NetworkPolicy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new NetworkPolicyError(`cannot read network policy ${file}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new NetworkPolicyError(`network policy ${file} is not JSON`, { cause: err });
  }
  return parseNetworkPolicy(json);
}

/**
 * The Docker `HostConfig.NetworkMode` that enforces the policy: `none` (loopback only) whenever
 * egress is denied, which is the only mode implemented.
 */
export function dockerNetworkModeFor(policy: NetworkPolicy): 'none' {
  // The schema refuses every other mode; this keeps the mapping total if the schema grows.
  if (policy.mode !== 'none') {
    throw new NetworkPolicyError(`network mode ${policy.mode} is not implemented`);
  }
  return 'none';
}
