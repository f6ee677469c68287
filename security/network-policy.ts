/**
 * The sandbox network policy (`security/network-policy.json`): default deny in every direction;
 * the sandbox's only way out is the gateway's egress proxy (`gateway/runtime/egress-proxy.ts`), reached
 * through a unix socket in the kernel directory, which allows only the allow-list
 * (`security/egress-policy.ts`). This module loads the file, validates it with zod (fail closed:
 * an unknown key or a value we cannot enforce is an error), and turns it into the sandbox's network
 * settings: the gateway loads it at start (gateway/server.ts policyFrom) and buildContainerSpec
 * writes its mode and resolver into every HostConfig; the k8s generator builds the
 * NetworkPolicies from the same file.
 *
 * @packageDocumentation
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { compileEgressPolicy } from './egress-policy.js';
import type { SandboxNetwork } from './policy.js';

const deny = z.literal('deny');

/** The egress proxy as the file describes it; the gateway's constants must agree (unit test). */
const egressProxy = z.strictObject({
  /** Where the relay listens inside the sandbox (its own loopback). */
  relay: z.literal('127.0.0.1:3128'),
  /** The proxy's socket as the sandbox sees it. */
  socket: z.literal('/run/kernel/egress.sock'),
  /** The default of AIDO_EGRESS_ALLOW: presets and host[:port] entries. */
  defaultAllow: z.array(z.string()),
  /** Entries that expand to hosts, by preset name (for readers; the code's presets must match). */
  presets: z.record(z.string(), z.array(z.string())),
  /** What the proxy refuses whatever a name resolves to, in words. */
  refusedAddresses: z.array(z.string()).min(1),
  /** The limits and their settings, in words. */
  limits: z.array(z.string()).min(1),
});

const schema = z
  .strictObject({
    $comment: z.string().optional(),
    version: z.literal(1),
    mode: z.literal('none'),
    egress: z.strictObject({ default: deny, allow: z.array(z.string()).max(0) }),
    ingress: z.strictObject({ default: deny, allow: z.array(z.string()).max(0) }),
    interContainer: deny,
    hostAccess: deny,
    dns: z.strictObject({ resolver: z.literal('127.0.0.1'), hideHostResolver: z.literal(true) }),
    egressProxy,
    notes: z.array(z.string()).optional(),
  })
  .superRefine((p, ctx) => {
    try {
      compileEgressPolicy(p.egressProxy.defaultAllow);
    } catch (err) {
      ctx.addIssue({
        code: 'custom',
        path: ['egressProxy', 'defaultAllow'],
        message: (err as Error).message,
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
 * The Docker `HostConfig.NetworkMode` that enforces the policy: `none` (loopback only), the only
 * mode; allowed egress goes through the gateway's proxy, never through an interface.
 */
export function dockerNetworkModeFor(policy: NetworkPolicy): 'none' {
  return policy.mode;
}

/** What of the policy goes into every sandbox's HostConfig (buildContainerSpec). */
export function sandboxNetworkOf(policy: NetworkPolicy): SandboxNetwork {
  return { mode: dockerNetworkModeFor(policy), dnsResolver: policy.dns.resolver };
}
