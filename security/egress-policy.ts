/**
 * The egress allow-list: which hosts a sandbox may reach through the gateway's egress proxy, and
 * which addresses it may never reach whatever a name resolves to. Pure: no sockets, no DNS; the
 * proxy (`gateway/runtime/egress-proxy.ts`) resolves names and asks this module about every step.
 *
 * Grammar of `AIDO_EGRESS_ALLOW` (comma list):
 * - a preset: `pypi` (pypi.org, files.pythonhosted.org) or `conda` (conda.anaconda.org,
 *   repo.anaconda.com), each on port 443;
 * - `host`: HTTPS only, a CONNECT tunnel to host:443;
 * - `host:port` (or `[v6]:port`): a CONNECT tunnel or plain HTTP to exactly that port.
 *
 * A name is matched as written (no wildcards, no suffix matching); an address the name resolves
 * to must then be a public unicast address that is not one of the gateway host's own. Loopback,
 * link-local (169.254.169.254, the cloud metadata service), private, carrier-grade NAT, multicast,
 * reserved and translated ranges are refused, unless an entry is that exact IP address with a
 * port: the escape hatch for a mirror on the host or the local network.
 *
 * @packageDocumentation
 */
import ipaddr from 'ipaddr.js';

/** The named presets of the allow-list. */
export const EGRESS_PRESETS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  pypi: ['pypi.org', 'files.pythonhosted.org'],
  conda: ['conda.anaconda.org', 'repo.anaconda.com'],
});

/** The default allow-list (the specification: "only PyPI and conda repositories accessible"). */
export const DEFAULT_EGRESS_ALLOW: readonly string[] = Object.freeze(['pypi', 'conda']);

/** The port an entry without one stands for: HTTPS. */
const HTTPS_PORT = 443;

/** One allow-list entry after presets are expanded. */
export interface EgressEntry {
  /** Lower-case host name without a trailing dot, or a normalized IP address. */
  readonly host: string;
  /** The port the entry names; `null`: HTTPS only (CONNECT to 443). */
  readonly port: number | null;
  /** Whether `host` is an IP address (then only that address is dialled). */
  readonly literal: boolean;
}

/** A compiled allow-list. Empty `entries`: egress is off (no proxy, no relay). */
export interface EgressPolicy {
  readonly entries: readonly EgressEntry[];
}

/** What a sandbox asked the proxy for. */
export interface EgressTarget {
  /** `connect`: a CONNECT tunnel (HTTPS); `http`: a plain-HTTP request in absolute form. */
  readonly kind: 'connect' | 'http';
  /** Normalized host (as in {@link EgressEntry.host}). */
  readonly host: string;
  readonly port: number;
  readonly literal: boolean;
}

/** A decision: allowed, or refused with a reason fit for a 403 status line and a log. */
export type EgressVerdict =
  { readonly allowed: true } | { readonly allowed: false; reason: string };

/** Addresses that belong to the gateway's host and its own listening socket. */
export interface HostFacts {
  /** Every address of the host's interfaces (normalized), and the gateway's listening address. */
  readonly localAddresses: ReadonlySet<string>;
}

/** An allow-list entry that cannot be parsed. */
export class EgressPolicyError extends Error {
  override readonly name = 'EgressPolicyError';
  /** Stable code for the gateway to map. */
  readonly code = 'INVALID_EGRESS_POLICY';
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A DNS name: labels of letters, digits and hyphens; the last one not all digits. */
function isHostName(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false;
  const labels = host.split('.');
  if (!labels.every((l) => LABEL.test(l))) return false;
  // "2130706433" or "127.1" are numbers a resolver may read as addresses: never names.
  return !/^\d+$/.test(labels[labels.length - 1] ?? '');
}

/** Normalizes a host as written in a URL or authority; `undefined` when it is not a host. */
function normalizeHost(raw: string): { host: string; literal: boolean } | undefined {
  let host = raw.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) {
    const inner = host.slice(1, -1);
    // No zone ids (fe80::1%eth0): they name an interface of the gateway's host.
    if (!ipaddr.IPv6.isValid(inner) || inner.includes('%')) return undefined;
    return { host: ipaddr.process(inner).toString(), literal: true };
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(host))
    return { host: ipaddr.process(host).toString(), literal: true };
  if (host.endsWith('.')) host = host.slice(0, -1);
  return isHostName(host) ? { host, literal: false } : undefined;
}

function parsePort(raw: string): number | undefined {
  if (!/^\d{1,5}$/.test(raw)) return undefined;
  const n = Number(raw);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/** Splits `host:port`, `[v6]:port`, `host` or `[v6]`; `port` is undefined when absent. */
function splitHostPort(s: string): { host: string; port: string | undefined } {
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return { host: s, port: undefined };
    const rest = s.slice(close + 1);
    return {
      host: s.slice(0, close + 1),
      port: rest.startsWith(':') ? rest.slice(1) : rest === '' ? undefined : rest,
    };
  }
  const colon = s.lastIndexOf(':');
  if (colon < 0) return { host: s, port: undefined };
  return { host: s.slice(0, colon), port: s.slice(colon + 1) };
}

/**
 * Parses one token of the allow-list into entries (a preset gives several).
 * @throws {@link EgressPolicyError} naming the token.
 */
function parseEgressEntry(token: string): EgressEntry[] {
  const t = token.trim().toLowerCase();
  const preset = Object.hasOwn(EGRESS_PRESETS, t) ? EGRESS_PRESETS[t] : undefined;
  if (preset) return preset.map((host) => ({ host, port: null, literal: false }));
  const { host: rawHost, port: rawPort } = splitHostPort(t);
  const host = /[/@]/.test(t) ? undefined : normalizeHost(rawHost);
  if (!host) {
    throw new EgressPolicyError(
      `"${token}" is neither a preset (${Object.keys(EGRESS_PRESETS).join(', ')}) nor host[:port] (no scheme, no path)`,
    );
  }
  let port: number | null = null;
  if (rawPort !== undefined) {
    const p = parsePort(rawPort);
    if (p === undefined) throw new EgressPolicyError(`"${token}": port must be 1..65535`);
    port = p;
  }
  return [{ host: host.host, port, literal: host.literal }];
}

/**
 * Compiles the allow-list tokens (presets and host[:port] entries) into a policy; duplicates are
 * dropped. An empty list is a policy that allows nothing (egress off).
 * @throws {@link EgressPolicyError} naming every bad token.
 */
export function compileEgressPolicy(tokens: readonly string[]): EgressPolicy {
  const problems: string[] = [];
  const seen = new Set<string>();
  const entries: EgressEntry[] = [];
  for (const token of tokens) {
    try {
      for (const e of parseEgressEntry(token)) {
        const key = `${e.host}|${e.port ?? ''}`;
        if (seen.has(key)) continue;
        seen.add(key);
        entries.push(e);
      }
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length > 0) throw new EgressPolicyError(problems.join('; '));
  return { entries };
}

/** The allow-list in words, for the health report: `pypi.org:443 (https)`, `10.0.0.5:3141 (https, http)`. */
export function describeEgressPolicy(policy: EgressPolicy): string[] {
  return policy.entries.map((e) => {
    const host = e.host.includes(':') ? `[${e.host}]` : e.host;
    return e.port === null ? `${host}:${HTTPS_PORT} (https)` : `${host}:${e.port} (https, http)`;
  });
}

/** The text every refusal starts with: it names the policy, so pip's messages say who refused. */
function egressRefusal(what: string, detail: string): string {
  return `egress to ${what} is not allowed by the gateway's policy: ${detail}`;
}

/** Makes sandbox-supplied text safe for a status line and a log: printable ASCII, bounded. */
function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 100)}...` : clean;
}

function showTarget(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Parses the authority of a CONNECT request (`host:port`). */
export function parseConnectTarget(authority: string): EgressTarget | EgressVerdict {
  const { host: rawHost, port: rawPort } = splitHostPort(authority);
  const host = normalizeHost(rawHost);
  const port = rawPort === undefined ? undefined : parsePort(rawPort);
  if (!host || port === undefined) {
    return {
      allowed: false,
      reason: egressRefusal(printable(authority), 'the CONNECT target is not host:port'),
    };
  }
  return { kind: 'connect', host: host.host, port, literal: host.literal };
}

/**
 * Parses the target of a plain-HTTP proxy request, which must be an absolute `http://` URL
 * without credentials (an origin-form request is not addressed to anyone but the proxy).
 */
export function parseHttpTarget(target: string): EgressTarget | EgressVerdict {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return {
      allowed: false,
      reason: egressRefusal(printable(target), 'a proxy request needs an absolute http:// URL'),
    };
  }
  if (url.protocol !== 'http:') {
    return {
      allowed: false,
      reason: egressRefusal(
        printable(target),
        `only http:// is forwarded (HTTPS goes through CONNECT), not ${printable(url.protocol)}`,
      ),
    };
  }
  const host = normalizeHost(url.hostname);
  if (url.username !== '' || url.password !== '' || !host) {
    return {
      allowed: false,
      reason: egressRefusal(printable(url.host), 'the URL does not name a host'),
    };
  }
  const port = url.port === '' ? 80 : Number(url.port);
  return { kind: 'http', host: host.host, port, literal: host.literal };
}

/** Whether parse gave a target (and not a refusal). */
export function isTarget(v: EgressTarget | EgressVerdict): v is EgressTarget {
  return 'kind' in v;
}

/**
 * The first check, on the name as the sandbox wrote it: a CONNECT to an entry's host and port
 * (443 for an entry without one), or plain HTTP to an entry that names that port.
 */
export function checkTarget(policy: EgressPolicy, target: EgressTarget): EgressVerdict {
  const what = showTarget(target.host, target.port);
  const hit = policy.entries.some(
    (e) =>
      e.host === target.host &&
      (e.port ?? (target.kind === 'connect' ? HTTPS_PORT : null)) === target.port,
  );
  if (hit) return { allowed: true };
  if (
    target.kind === 'http' &&
    policy.entries.some((e) => e.host === target.host && e.port === null)
  ) {
    return {
      allowed: false,
      reason: egressRefusal(what, 'the allow-list has this host for HTTPS only'),
    };
  }
  return { allowed: false, reason: egressRefusal(what, 'it is not in the allow-list') };
}

/**
 * The second check, on an address the name resolved to (or the literal itself): it must be public
 * unicast and not the gateway host's own, unless an entry is exactly this address and port.
 */
export function checkAddress(
  policy: EgressPolicy,
  target: EgressTarget,
  address: string,
  facts: HostFacts,
): EgressVerdict {
  if (!ipaddr.isValid(address)) {
    return {
      allowed: false,
      reason: egressRefusal(showTarget(target.host, target.port), 'no usable address'),
    };
  }
  const addr = ipaddr.process(address).toString();
  const named = policy.entries.some((e) => e.literal && e.host === addr && e.port === target.port);
  if (named) return { allowed: true };
  const what = showTarget(target.host, target.port);
  const range = ipaddr.process(address).range();
  if (range !== 'unicast') {
    const via = target.literal ? '' : ` it resolves to ${addr},`;
    return {
      allowed: false,
      reason: egressRefusal(
        what,
        `${via} a ${range} address (only an entry naming that exact address:port allows it)`.trim(),
      ),
    };
  }
  if (facts.localAddresses.has(addr)) {
    return {
      allowed: false,
      reason: egressRefusal(what, `${addr} is an address of the gateway's own host`),
    };
  }
  return { allowed: true };
}
