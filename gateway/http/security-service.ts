/**
 * The security API's logic: panic, the sandbox listing with its limits read back from the live
 * sandboxes, targeted removal, and a health report read back from live sandboxes. The runtime
 * reports neutral facts ({@link SandboxLimits}, {@link SandboxControls}); the JSON keeps the seed
 * API's Docker-named fields, which any backend fills from those facts.
 */
import { appArmorStatus, type AppArmorHostFacts } from '../../security/apparmor.js';
import {
  describeDisabledControls,
  EGRESS_RELAY_PORT,
  type SandboxPolicy,
} from '../../security/policy.js';
import type { GatewayConfig } from '../base/config.js';
import type { EgressProxies } from '../runtime/egress-proxy.js';
import { GatewayError } from '../base/errors.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';
import type { Logger } from '../base/logger.js';
import type {
  EngineInfo,
  KernelRuntime,
  SandboxControls,
  SandboxLimits,
} from '../runtime/runtime.js';
import { hostAccountsIn } from '../runtime/sandbox-uid.js';
import type { SessionStore } from './sessions.js';

export interface SecurityServiceDeps {
  config: GatewayConfig;
  kernels: KernelRegistry;
  sessions: SessionStore;
  runtime: KernelRuntime;
  engine: EngineInfo;
  policy: SandboxPolicy;
  appArmor: AppArmorHostFacts;
  logger: Logger;
  /** Egress proxies (absent: egress off). */
  egress?: EgressProxies;
}

/** A sandbox's limits under the seed API's field names (Docker's HostConfig, 0 for none). */
function limitsJson(l: SandboxLimits): Record<string, unknown> {
  return {
    memory: l.memoryBytes ?? 0,
    memory_swap: l.memoryAndSwapBytes ?? 0,
    nano_cpus: l.cpus === null ? 0 : Math.round(l.cpus * 1e9),
    cpu_shares: l.cpuShares ?? 0,
    pids_limit: l.pids,
    ulimits: l.openFiles && [{ Name: 'nofile', Soft: l.openFiles.soft, Hard: l.openFiles.hard }],
    readonly_rootfs: l.readOnlyRootfs,
    network_mode: l.network,
    cap_drop: l.capabilitiesDropped,
    tmpfs: l.scratch,
  };
}

/** The controls as the seed API's `security_opt` strings (the seccomp profile itself elided). */
function securityOptJson(c: SandboxControls): string[] {
  const out: string[] = [];
  if (c.noNewPrivileges) out.push('no-new-privileges:true');
  if (c.seccomp === 'aido') out.push('seccomp=<profile>');
  if (c.seccomp === 'none') out.push('seccomp=unconfined');
  if (c.appArmor !== null) out.push(`apparmor=${c.appArmor}`);
  return out;
}

export class SecurityService {
  constructor(private readonly d: SecurityServiceDeps) {}

  /** Kills every sandbox now; the gateway keeps serving. */
  async panic(): Promise<{ killed: number }> {
    const all = this.d.kernels.list();
    this.d.logger.warn({ kernels: all.length }, 'PANIC: killing every sandbox');
    const pooled = await this.d.kernels.pool.drain({ refill: true });
    await Promise.allSettled(
      all.map((k) => this.d.kernels.terminate(k.id, 'killed by panic', { cause: 'panic' })),
    );
    // Anything else labelled for this gateway, except sandboxes the pool started since.
    const orphans = await this.d.runtime.reapOrphans(this.d.kernels.pool.sandboxIds());
    return { killed: all.length + pooled + orphans };
  }

  async containers(): Promise<unknown[]> {
    const list = await this.d.runtime.list();
    const pooled = this.d.kernels.pool.sandboxIds();
    return list.map((c) => {
      const kernelId =
        this.d.kernels.kernelOfSandbox(c.sandboxId) ??
        (pooled.has(c.sandboxId) ? null : c.kernelId);
      return {
        kernel_id: kernelId,
        pooled: pooled.has(c.sandboxId),
        container_id: c.sandboxId,
        session_ids: kernelId ? this.d.sessions.idsForKernel(kernelId) : [],
        created: c.created,
        state: c.state,
        limits: limitsJson(c.limits),
        security_opt: securityOptJson(c.controls),
        runtime: c.runtime,
        egress: kernelId ? (this.d.egress?.stats(kernelId) ?? null) : null,
      };
    });
  }

  /** Removes a sandbox by sandbox id (or a 12+ character prefix) or by kernel id. */
  async removeSandbox(id: string): Promise<void> {
    if (this.d.kernels.find(id)) {
      await this.d.kernels.terminate(id, 'removed through the security API');
      return;
    }
    const match = (await this.d.runtime.list()).find(
      (c) => id.length >= 12 && c.sandboxId.startsWith(id),
    );
    if (!match)
      throw new GatewayError('CONTAINER_NOT_FOUND', `No sandbox with container or kernel id ${id}`);
    if (match.kernelId && this.d.kernels.find(match.kernelId)) {
      await this.d.kernels.terminate(match.kernelId, 'removed through the security API');
      return;
    }
    await this.d.runtime.removeSandbox(match.sandboxId);
  }

  /** Removes everything of a session: its kernel, container, directory and connections. */
  async removeSession(id: string): Promise<void> {
    const kernelId = this.d.kernels.find(id) ? id : this.d.sessions.kernelOf(id);
    if (!kernelId || !this.d.kernels.find(kernelId))
      throw new GatewayError('SESSION_NOT_FOUND', `No session or kernel ${id}`);
    await this.d.kernels.terminate(kernelId, 'session removed through the security API');
    for (const sid of this.d.sessions.idsForKernel(kernelId))
      await this.d.sessions.delete(sid).catch(() => undefined);
  }

  /** The inbound gate's limits and every kernel that broke them (killed ones included). */
  #inbound(): Record<string, unknown> {
    const { config } = this.d;
    const offenders = [];
    for (const k of this.d.kernels.list()) {
      const r = k.gate.report();
      if (r.violations_total === 0) continue;
      offenders.push({
        kernel_id: k.id,
        execution_state: k.executionState,
        reason: k.reason ?? null,
        ...r,
      });
    }
    return {
      max_message_bytes: config.zmqMaxMessageSize,
      receive_hwm: config.zmqReceiveHwm,
      max_frames: config.kernelMaxFrames,
      max_header_bytes: config.kernelMaxHeaderBytes,
      max_metadata_bytes: config.kernelMaxMetadataBytes,
      abuse_limit: config.kernelAbuseLimit,
      iopub_msg_rate_limit: config.iopubMsgRateLimit,
      iopub_data_rate_limit: config.iopubDataRateLimit,
      ws_max_buffered_bytes: config.wsMaxBufferedBytes,
      kernels_with_violations: offenders,
    };
  }

  /** The egress proxy's policy as health reports it: the sandbox network stays none either way. */
  #egressHealth(): Record<string, unknown> {
    const { config } = this.d;
    if (!this.d.egress) return { enabled: false, allow: [] };
    return {
      enabled: true,
      allow: this.d.egress.describe(),
      via: `per-kernel unix socket proxy; relay on 127.0.0.1:${EGRESS_RELAY_PORT} inside the sandbox`,
      budget_bytes: config.egressBytes,
      max_connections: config.egressConnections,
      connect_timeout_s: config.egressDialTimeoutS,
      idle_timeout_s: config.egressIdleTimeoutS,
      pip_size_bytes: config.pipSizeBytes,
    };
  }

  async health(): Promise<Record<string, unknown>> {
    const { config, policy } = this.d;
    const reachable = await this.d.runtime.ping();
    let dockerVersion: string | null = null;
    let image: Record<string, unknown> = { name: config.kernelImage, present: false };
    let live: Awaited<ReturnType<KernelRuntime['list']>> = [];
    if (reachable) {
      dockerVersion = await this.d.engine.version().catch(() => null);
      const found = await this.d.engine.image(config.kernelImage).catch(() => null);
      if (found) image = { name: config.kernelImage, present: true, ...found };
      live = await this.d.runtime.list().catch(() => []);
    }
    const running = live.filter((c) => c.state === 'running');
    const { first, count } = policy.uidRange;
    /** The uid of a `uid:gid` user in the sandbox range with gid = uid, else undefined. */
    const uidOf = (user: string): number | undefined => {
      const m = /^(\d+):(\d+)$/.exec(user);
      const uid = Number(m?.[1]);
      return m && m[1] === m[2] && uid >= first && uid < first + count ? uid : undefined;
    };
    const every = (pred: (controls: SandboxControls) => boolean): boolean | null =>
      running.length === 0 ? null : running.every((c) => pred(c.controls));
    const disabled = describeDisabledControls(policy);
    if (config.execTimeoutS === 0) disabled.push('execution deadline (AIDO_EXEC_TIMEOUT=0)');
    const appArmor = appArmorStatus(policy.appArmorProfile, this.d.appArmor);
    if (appArmor.state !== 'enforced') disabled.push(`AppArmor: ${appArmor.detail}`);
    const byState: Record<string, number> = {};
    for (const k of this.d.kernels.list())
      byState[k.executionState] = (byState[k.executionState] ?? 0) + 1;
    return {
      status: reachable && image.present === true ? 'ok' : 'degraded',
      docker: { reachable, version: dockerVersion },
      image,
      runtime: policy.runtime ?? 'runc',
      controls: {
        seccomp: {
          configured: policy.seccomp,
          in_force_on_live_sandboxes: every((c) => c.seccomp === 'aido'),
        },
        no_new_privileges: {
          configured: policy.noNewPrivileges,
          in_force_on_live_sandboxes: every((c) => c.noNewPrivileges),
        },
        apparmor: {
          host_supported: this.d.appArmor.enabled,
          profile: policy.appArmorProfile,
          state: appArmor.state,
          detail: appArmor.detail,
          in_force_on_live_sandboxes:
            appArmor.state === 'enforced' ? every((c) => c.appArmor !== null) : false,
        },
        user: {
          uid_first: policy.uidRange.first,
          uid_count: policy.uidRange.count,
          // Checked at start (the gateway refuses a range with a host account); read again here.
          host_account: hostAccountsIn(policy.uidRange.first, policy.uidRange.count),
          in_force_on_live_sandboxes:
            running.length === 0 ? null : running.every((c) => uidOf(c.user) !== undefined),
          one_uid_per_sandbox:
            running.length === 0
              ? null
              : new Set(running.map((c) => c.user)).size === running.length,
        },
        read_only_rootfs: policy.readOnlyRootfs,
        network: 'none',
        egress: this.#egressHealth(),
        capabilities: 'all dropped',
        exec_timeout_s: config.execTimeoutS,
        kill_grace_s: config.killGraceS,
        disabled,
      },
      kernels: {
        count: this.d.kernels.list().length,
        by_state: byState,
        max: config.maxKernels,
        sandboxes_running: running.length,
      },
      inbound: this.#inbound(),
      pool: {
        size: config.poolSize,
        ready: this.d.kernels.pool.ready,
        starting: this.d.kernels.pool.filling,
      },
      limits: policy.limits,
    };
  }
}
