/**
 * Assembles the gateway from its parts. `createGateway(config)` builds everything without
 * listening, so tests can `listen()` on port 0; `close()` drains requests and removes every sandbox.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import Docker from 'dockerode';
import { readAppArmorHostFacts } from '../security/apparmor.js';
import { compileEgressPolicy } from '../security/egress-policy.js';
import { loadNetworkPolicy, sandboxNetworkOf } from '../security/network-policy.js';
import { DEFAULT_LIMITS, SANDBOX_UID_COUNT, type SandboxPolicy } from '../security/policy.js';
import { createAgentApi } from './http/agent-api.js';
import { AgentExecutor } from './agent/agent-execution.js';
import { createChatApi } from './http/chat-api.js';
import type { GatewayConfig } from './base/config.js';
import { GatewayError } from './base/errors.js';
import { createConsoleApi } from './http/console-api.js';
import { createConsoleRoute } from './http/console-route.js';
import { Culler } from './kernel/culler.js';
import { dockerEngineInfo } from './runtime/docker-engine-info.js';
import { DockerRuntime } from './runtime/docker-runtime.js';
import { EgressProxies } from './runtime/egress-proxy.js';
import { createHttpApi } from './http/http-api.js';
import { sendJsonError } from './http/json-errors.js';
import { KernelRegistry } from './kernel/kernel-registry.js';
import { KernelSpecs } from './kernel/kernelspecs.js';
import { createLogger, type Logger } from './base/logger.js';
import { McpGateway } from './http/mcp-server.js';
import { GatewayMetrics } from './base/metrics.js';
import type { EngineInfo, KernelRuntime } from './runtime/runtime.js';
import { SandboxStats } from './runtime/sandbox-stats.js';
import { hostAccountsIn } from './runtime/sandbox-uid.js';
import { SecurityService } from './http/security-service.js';
import { SessionStore } from './http/sessions.js';
import { StateDirLock } from './runtime/state-lock.js';
import { WorkspaceFiles, type SandboxExec } from './agent/workspace-files.js';
import { createChannelsServer } from './http/ws-server.js';

export interface Gateway {
  readonly config: GatewayConfig;
  readonly server: Server;
  readonly kernels: KernelRegistry;
  readonly sessions: SessionStore;
  readonly runtime: KernelRuntime;
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  /** This run's id; its sandboxes carry it in a label. */
  readonly instance: string;
  /**
   * Locks the state dir (refused while another gateway holds it), checks the sandbox uid, adopts
   * what a previous run left, and listens on config.ip:config.port; resolves with the bound port.
   */
  listen(): Promise<number>;
  /** Refuses new requests (503), closes sockets, removes every sandbox. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The sandbox policy the configuration asks for; the network settings come from
 * security/network-policy.json (an invalid or missing file stops the start: fail closed).
 */
export function policyFrom(config: GatewayConfig): SandboxPolicy {
  return {
    limits: {
      ...DEFAULT_LIMITS,
      memoryBytes: config.memoryBytes,
      cpus: config.cpus,
      cpuShares: config.cpuShares,
      pids: config.pids,
      nofile: config.nofile,
      tmpSizeBytes: config.tmpSizeBytes,
      workspaceSizeBytes: config.workspaceSizeBytes,
    },
    network: sandboxNetworkOf(loadNetworkPolicy()),
    seccomp: config.seccomp,
    appArmorProfile: 'aido-kernel',
    noNewPrivileges: true,
    readOnlyRootfs: true,
    runtime: config.runtime === '' ? null : config.runtime,
    uidRange: { first: config.sandboxUid, count: SANDBOX_UID_COUNT },
  };
}

/**
 * What the composition root may be given instead of building it. A second backend plugs in here:
 * with `runtime` (and `engine`, `stats`) given, no Docker client is built.
 */
export interface GatewayDeps {
  logger?: Logger;
  /** The Docker client the Docker backend uses (default: one on config.dockerSocket). */
  docker?: Docker;
  /** The sandbox backend (default: the Docker runtime). */
  runtime?: KernelRuntime;
  /** What the health report asks of the backend's engine (default: Docker's). */
  engine?: EngineInfo;
  /** Live memory and CPU of sandboxes for the console (default: Docker's stats). */
  stats?: Pick<SandboxStats, 'read'>;
}

export function createGateway(config: GatewayConfig, deps: GatewayDeps = {}): Gateway {
  const logger = deps.logger ?? createLogger(config.logLevel);
  let dockerClient = deps.docker;
  const docker = (): Docker => (dockerClient ??= new Docker({ socketPath: config.dockerSocket }));
  const policy = policyFrom(config);
  const appArmor = readAppArmorHostFacts();
  // Only a loaded profile may be named in SecurityOpt: Docker refuses to start a container with an
  // unknown one.
  const appArmorUsable = appArmor.enabled && appArmor.profileLoaded;
  const instance = randomUUID();
  const runtime =
    deps.runtime ??
    new DockerRuntime({
      docker: docker(),
      instance,
      stateDir: config.stateDir,
      image: config.kernelImage,
      policy,
      hostHasAppArmor: appArmorUsable,
      startCpus: config.startCpus,
      ...(config.egressAllow.length > 0 ? { egress: { pipSizeBytes: config.pipSizeBytes } } : {}),
    });
  const specs = new KernelSpecs();
  const metrics = new GatewayMetrics();
  // An empty allow-list: no proxy, no relay, no proxy settings in any sandbox.
  const egress =
    config.egressAllow.length > 0
      ? new EgressProxies({
          policy: compileEgressPolicy(config.egressAllow),
          limits: {
            bytes: config.egressBytes,
            maxConnections: config.egressConnections,
            connectTimeoutMs: config.egressDialTimeoutS * 1000,
            idleTimeoutMs: config.egressIdleTimeoutS * 1000,
          },
          logger,
          metrics,
          gatewayIp: config.ip,
        })
      : undefined;
  const kernels = new KernelRegistry(config, runtime, specs, logger, metrics, egress);
  metrics.observe({
    kernelStates: () => kernels.states(),
    pool: () => ({ ready: kernels.pool.ready, starting: kernels.pool.filling }),
  });
  const culler = new Culler({
    policy: {
      idleTimeoutMs: config.cullIdleTimeoutS * 1000,
      connected: config.cullConnected,
      busy: config.cullBusy,
    },
    intervalMs: config.cullIntervalS * 1000,
    kernels: () => kernels.list(),
    // terminate() forgets the kernel before its first await, so no later check sees it again.
    cull: async (k, idleMs) => {
      const s = Math.round(idleMs / 1000);
      logger.info(
        { kernel: k.id, idle_s: s, state: k.executionState, connections: k.connections },
        'culling an idle kernel',
      );
      metrics.culled();
      try {
        await kernels.terminate(k.id, `culled: idle for ${s} s`, {
          notice: `Kernel culled after ${s} s idle`,
        });
      } catch (err) {
        logger.warn({ kernel: k.id, err: String(err) }, 'culling a kernel failed');
      }
    },
  });
  // Gateway-owned state: root's alone (no sandbox mounts any of it).
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  chmodSync(config.stateDir, 0o700);
  const sessions = new SessionStore(kernels, path.join(config.stateDir, 'sessions.json'));
  const security = new SecurityService({
    config,
    kernels,
    sessions,
    runtime,
    engine: deps.engine ?? dockerEngineInfo(docker()),
    policy,
    appArmor,
    logger,
    ...(egress ? { egress } : {}),
  });
  let draining = false;
  const isDraining = (): boolean => draining;
  const sandboxExec: SandboxExec = (sandboxId, argv, stdin, opts) =>
    runtime.exec(sandboxId, argv, stdin, opts);
  const files = new WorkspaceFiles(sandboxExec, logger.child({ component: 'workspace-files' }), {
    timeoutMs: config.sandboxExecTimeoutS * 1000,
    maxDownloadBytes: config.maxDownloadBytes,
  });
  const executor = new AgentExecutor({ files, exec: sandboxExec, logger });
  const mcp = new McpGateway({
    config,
    kernels,
    executor,
    files,
    logger: logger.child({ component: 'mcp' }),
  });
  const agentApi = createAgentApi({ config, kernels, executor, files, mcp, logger });
  // The same execution path with a smaller output cap: a chat keeps every step's outputs in memory.
  const chatExecutor = new AgentExecutor({
    files,
    exec: sandboxExec,
    logger,
    maxOutputBytes: 2 * 1024 ** 2,
  });
  const chat = createChatApi({ config, kernels, executor: chatExecutor, files, logger });
  const app = createHttpApi({
    config,
    kernels,
    sessions,
    specs,
    security,
    logger,
    isDraining,
    agentApi,
    chatApi: chat.router,
    metrics,
    consolePage: createConsoleRoute(),
    consoleApi: createConsoleApi({
      config,
      kernels,
      stats: deps.stats ?? new SandboxStats(docker()),
    }),
  });
  // A request target that is not a URL (an absolute-form target with a broken host, say) matches
  // no Express route at all; answer it here with the gateway's JSON error instead.
  const server = createServer((req, res) => {
    try {
      new URL(req.url ?? '/', 'http://gateway');
    } catch {
      sendJsonError(res, new GatewayError('BAD_REQUEST', 'the request target is not a valid URL'));
      return;
    }
    app(req, res);
  });
  server.on('connection', (s) => {
    s.setNoDelay(true);
  });
  const channels = createChannelsServer(config, kernels, logger, isDraining, metrics);
  server.on('upgrade', (req, socket, head) => {
    channels.handleUpgrade(req, socket, head);
  });

  let closed: Promise<void> | undefined;
  let reaper: NodeJS.Timeout | undefined;
  let lock: StateDirLock | undefined;
  const gateway: Gateway = {
    config,
    instance,
    server,
    kernels,
    sessions,
    runtime,
    logger,
    metrics,
    async listen() {
      const accounts = hostAccountsIn(config.sandboxUid, SANDBOX_UID_COUNT);
      if (accounts.length > 0) {
        throw new Error(
          `AIDO_SANDBOX_UID: the sandbox uids ${config.sandboxUid}..${config.sandboxUid + SANDBOX_UID_COUNT - 1} include ${accounts.join(', ')}: choose a range no host account has`,
        );
      }
      // One live gateway per state dir: a second one would adopt and reap the first one's kernels.
      lock ??= await StateDirLock.acquire(config.stateDir, instance);
      // Kernels outlive the gateway: take over the sandboxes a previous run left, then remove
      // whatever could not be adopted (stopped containers, unbound pool sandboxes). When the
      // sandboxes cannot even be listed, nothing is reaped: an error is never a reason to remove.
      let adopted: number | undefined;
      try {
        adopted = await kernels.adopt();
      } catch (err) {
        logger.warn({ err: String(err) }, 'could not adopt running sandboxes (is Docker up?)');
      }
      if (adopted !== undefined) {
        if (adopted > 0) logger.info({ adopted }, 'adopted kernels from a previous run');
        const reaped = await runtime.reapOrphans(kernels.sandboxIds()).catch((err: unknown) => {
          logger.warn({ err: String(err) }, 'could not reap orphaned sandboxes (is Docker up?)');
          return 0;
        });
        if (reaped > 0) logger.info({ reaped }, 'removed orphaned sandboxes');
      }
      // Later orphans (a sandbox whose kernel failed half-way, a container left by a crash of
      // Docker calls) are reaped periodically; young ones may still be starting.
      reaper = setInterval(() => {
        runtime
          .reapOrphans(kernels.sandboxIds(), { minAgeMs: 5 * 60_000 })
          .then((n) => {
            if (n > 0) logger.warn({ reaped: n }, 'removed orphaned sandboxes');
          })
          .catch((err: unknown) => {
            logger.warn({ err: String(err) }, 'orphan reaping failed');
          });
      }, 60_000);
      reaper.unref();
      kernels.pool.start();
      culler.start();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.ip, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return (server.address() as AddressInfo).port;
    },
    close() {
      closed ??= (async () => {
        draining = true;
        clearInterval(reaper);
        await culler.stop();
        channels.close();
        await mcp.close();
        await chat.close();
        const n = await kernels.shutdownAll();
        egress?.closeAll();
        logger.info({ kernels: n }, 'all kernels removed');
        await new Promise<void>((resolve) => {
          server.close(() => {
            resolve();
          });
          server.closeAllConnections();
        });
        lock?.release();
      })();
      return closed;
    },
    async [Symbol.asyncDispose]() {
      await gateway.close();
    },
  };
  return gateway;
}
