/**
 * The gateway's configuration: one typed table (name, env var, flag, default, parser, help),
 * loaded once at start-up from the environment and argv and validated fail-closed.
 *
 * Longer than 400 lines because it is one table, a row per setting: the README's configuration
 * table and `--help` are generated from it, and a setting's parser sits beside its name.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { compileEgressPolicy, DEFAULT_EGRESS_ALLOW } from '../../security/egress-policy.js';
import {
  DEFAULT_SANDBOX_UID,
  SANDBOX_UID_COUNT,
  validateEgress,
  validateLimits,
} from '../../security/policy.js';

type Parser<T> = (raw: string) => T;

interface Entry<T> {
  env: string;
  flag: string;
  default: T | (() => T);
  parse: Parser<T>;
  help: string;
  /** An empty value means empty, not "the default" (an empty allow-list denies everything). */
  keepEmpty?: true;
}

/** Shortest token accepted: a guessable token is no gate. */
const MIN_TOKEN_LENGTH = 16;

function int(min: number, max: number): Parser<number> {
  return (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`expected an integer, got "${raw}"`);
    const n = Number(raw);
    if (n < min || n > max) throw new Error(`expected ${min}..${max}, got ${n}`);
    return n;
  };
}

function num(min: number, max: number): Parser<number> {
  return (raw) => {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n))
      throw new Error(`expected a number, got "${raw}"`);
    if (n < min || n > max) throw new Error(`expected ${min}..${max}, got ${n}`);
    return n;
  };
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** Parses `512m`, `100M`, `1g`, `65536` into bytes. */
function bytes(min: number): Parser<number> {
  return (raw) => {
    const m = /^(\d+)\s*([bkmg]?)i?b?$/i.exec(raw.trim());
    const unit = m?.[2]?.toLowerCase() ?? '';
    if (!m?.[1] || !(unit in UNITS)) throw new Error(`expected a size like 512m, got "${raw}"`);
    const n = Number(m[1]) * (UNITS[unit] ?? 1);
    if (n < min) throw new Error(`expected at least ${min} bytes, got ${n}`);
    return n;
  };
}

function bool(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new Error(`expected true/false, got "${raw}"`);
}

function str(raw: string): string {
  return raw;
}

function list(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The egress allow-list: presets and host[:port] entries, checked here so a typo stops start-up. */
function egressList(raw: string): string[] {
  const tokens = list(raw);
  compileEgressPolicy(tokens);
  return tokens;
}

function absDir(raw: string): string {
  if (raw.trim() === '') throw new Error('expected a directory path');
  return path.resolve(raw);
}

/** The model server's base URL: http(s), and no credentials in it (they would reach logs). */
function modelServerUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new Error(`expected an http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`expected an http(s) URL, got "${raw}"`);
  if (url.username !== '' || url.password !== '')
    throw new Error('credentials do not belong in the URL: put the key in AIDO_LLM_API_KEY_FILE');
  return url.href.replace(/\/+$/, '');
}

function absFile(raw: string): string {
  if (raw.trim() === '') throw new Error('expected a file path');
  return path.resolve(raw);
}

function logLevel(raw: string): string {
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (!levels.includes(raw)) throw new Error(`expected one of ${levels.join(', ')}`);
  return raw;
}

const TABLE = {
  ip: {
    env: 'AIDO_IP',
    flag: '--ip',
    default: '127.0.0.1',
    parse: str,
    help: 'address to listen on',
  },
  port: {
    env: 'AIDO_PORT',
    flag: '--port',
    default: 8888,
    parse: int(0, 65535),
    help: 'port to listen on (0: any free port)',
  },
  authToken: {
    env: 'AIDO_AUTH_TOKEN',
    flag: '--auth-token',
    default: '',
    parse: str,
    help: `shared token clients must present (at least ${MIN_TOKEN_LENGTH} characters); generated and printed when unset. The flag is refused: ps shows it to every local user`,
  },
  authTokenFile: {
    env: 'AIDO_AUTH_TOKEN_FILE',
    flag: '--auth-token-file',
    default: '',
    parse: str,
    help: 'file holding the token (first line; surrounding whitespace ignored), instead of AIDO_AUTH_TOKEN',
  },
  execTimeoutS: {
    env: 'AIDO_EXEC_TIMEOUT',
    flag: '--exec-timeout',
    default: 30,
    parse: num(0, 86400),
    help: 'wall-clock seconds per execution before interrupt, then kill (0 disables: reported by health)',
  },
  killGraceS: {
    env: 'AIDO_KILL_GRACE',
    flag: '--kill-grace',
    default: 3,
    parse: num(0.05, 600),
    help: 'seconds between the interrupt and SIGKILL when the interrupt does not end the execution',
  },
  restartAfterKill: {
    env: 'AIDO_RESTART_AFTER_KILL',
    flag: '--restart-after-kill',
    default: true,
    parse: bool,
    help: 'restart a kernel on a fresh sandbox (same id) after the watchdog kills it; false leaves it dead',
  },
  kernelImage: {
    env: 'AIDO_KERNEL_IMAGE',
    flag: '--kernel-image',
    default: 'aido-kernel:latest',
    parse: str,
    help: 'kernel image (built by kernel-image/build.sh)',
  },
  poolSize: {
    env: 'AIDO_POOL_SIZE',
    flag: '--pool-size',
    default: 2,
    parse: int(0, 1000),
    help: 'warm sandboxes kept ready',
  },
  maxKernels: {
    env: 'AIDO_MAX_KERNELS',
    flag: '--max-kernels',
    default: 16,
    parse: int(1, 100000),
    help: 'kernels allowed at once; past it POST /api/kernels is refused with 403',
  },
  sandboxUid: {
    env: 'AIDO_SANDBOX_UID',
    flag: '--sandbox-uid',
    default: DEFAULT_SANDBOX_UID,
    parse: int(1, 2 ** 31 - 1 - SANDBOX_UID_COUNT),
    help: `first of the ${SANDBOX_UID_COUNT} host uids (= gids) kernels run as, one per sandbox; the gateway refuses to start if a host account (passwd, group, subuid, subgid) has one`,
  },
  stateDir: {
    env: 'AIDO_STATE_DIR',
    flag: '--state-dir',
    default: '/var/lib/aido-kgw',
    parse: absDir,
    help: 'gateway-owned state: the lock, sandbox records, sessions (root-only; no sandbox mounts it)',
  },
  memoryBytes: {
    env: 'AIDO_MEMORY_LIMIT',
    flag: '--memory-limit',
    default: 512 * 1024 ** 2,
    parse: bytes(6 * 1024 ** 2),
    help: 'memory per sandbox, no swap (tmpfs pages count)',
  },
  cpus: {
    env: 'AIDO_CPU_LIMIT',
    flag: '--cpu-limit',
    default: 0.5,
    parse: num(0.01, 256),
    help: 'CPU cores per sandbox',
  },
  cpuShares: {
    env: 'AIDO_CPU_SHARES',
    flag: '--cpu-shares',
    default: 256,
    parse: int(2, 262144),
    help: "CPU weight of a sandbox under contention (Docker CpuShares; 1024 is Docker's default): below the gateway's, so busy sandboxes wait for the gateway",
  },
  pids: {
    env: 'AIDO_PIDS_LIMIT',
    flag: '--pids-limit',
    default: 50,
    parse: int(8, 100000),
    help: 'processes and threads per sandbox',
  },
  nofile: {
    env: 'AIDO_NOFILE_LIMIT',
    flag: '--nofile-limit',
    default: 1024,
    parse: int(64, 1048576),
    help: 'open files per process',
  },
  tmpSizeBytes: {
    env: 'AIDO_TMP_SIZE',
    flag: '--tmp-size',
    default: 64 * 1024 ** 2,
    parse: bytes(1024 ** 2),
    help: 'size of the /tmp tmpfs',
  },
  workspaceSizeBytes: {
    env: 'AIDO_WORKSPACE_SIZE',
    flag: '--workspace-size',
    default: 100 * 1024 ** 2,
    parse: bytes(1024 ** 2),
    help: 'size of /workspace (tmpfs-backed)',
  },
  startCpus: {
    env: 'AIDO_START_CPUS',
    flag: '--start-cpus',
    default: 1,
    parse: num(0, 256),
    help: 'CPU cores a sandbox may use while its kernel starts, lowered to AIDO_CPU_LIMIT before any user code runs (0: off)',
  },
  seccomp: {
    env: 'AIDO_SECCOMP',
    flag: '--seccomp',
    default: true,
    parse: bool,
    help: 'apply security/seccomp-profile.json (false: reported by health)',
  },
  runtime: {
    env: 'AIDO_RUNTIME',
    flag: '--runtime',
    default: '',
    parse: str,
    help: 'Docker runtime for sandboxes (e.g. runsc); empty: the daemon default',
  },
  allowOrigin: {
    env: 'AIDO_ALLOW_ORIGIN',
    flag: '--allow-origin',
    default: [] as string[],
    parse: list,
    help: 'origins allowed for CORS and WebSocket (comma list; * allows any); same host is always allowed',
  },
  envAllowlist: {
    env: 'AIDO_ENV_ALLOWLIST',
    flag: '--env-allowlist',
    default: [] as string[],
    parse: list,
    help: 'client env names passed into kernels besides KERNEL_* (comma list)',
  },
  maxFrameBytes: {
    env: 'AIDO_MAX_FRAME_BYTES',
    flag: '--max-frame-bytes',
    default: 32 * 1024 ** 2,
    parse: bytes(1024),
    help: 'largest WebSocket message accepted from a client (bigger: close 1009)',
  },
  maxUploadBytes: {
    env: 'AIDO_MAX_UPLOAD_BYTES',
    flag: '--max-upload-bytes',
    default: 10 * 1024 ** 2,
    parse: bytes(1),
    help: 'largest workspace file upload (PUT /api/kernels/{id}/files/…, MCP write_file); bigger: 413',
  },
  mcpIdleTimeoutS: {
    env: 'AIDO_MCP_IDLE_TIMEOUT',
    flag: '--mcp-idle-timeout',
    default: 1800,
    parse: num(0, 86400 * 7),
    help: 'seconds an MCP session may sit idle before it is closed and its own kernel shut down (0: never)',
  },
  llmBaseUrl: {
    env: 'AIDO_LLM_BASE_URL',
    flag: '--llm-base-url',
    default: '',
    parse: modelServerUrl,
    help: 'OpenAI-compatible Chat Completions URL for POST /api/chat (e.g. http://127.0.0.1:11434/v1); empty: off (503)',
  },
  llmModel: {
    env: 'AIDO_LLM_MODEL',
    flag: '--llm-model',
    default: '',
    parse: str,
    help: 'model name sent to the model server (required with AIDO_LLM_BASE_URL)',
  },
  llmApiKeyFile: {
    env: 'AIDO_LLM_API_KEY_FILE',
    flag: '--llm-api-key-file',
    default: '',
    parse: absFile,
    help: "file with the model server's API key, read once at start (never in argv, logs or a sandbox); empty: no key",
  },
  llmMaxSteps: {
    env: 'AIDO_LLM_MAX_STEPS',
    flag: '--llm-max-steps',
    default: 8,
    parse: int(1, 100),
    help: 'tool rounds per chat request; then the model must answer with what was done',
  },
  llmTimeoutS: {
    env: 'AIDO_LLM_TIMEOUT',
    flag: '--llm-timeout',
    default: 120,
    parse: num(1, 3600),
    help: 'seconds one model request may take, a streamed answer to its end included',
  },
  llmMaxRetries: {
    env: 'AIDO_LLM_MAX_RETRIES',
    flag: '--llm-max-retries',
    default: 2,
    parse: int(0, 10),
    help: 'retries of a model request that failed to connect, timed out or got 408/409/429/5xx',
  },
  llmToolResultChars: {
    env: 'AIDO_LLM_TOOL_RESULT_MAX',
    flag: '--llm-tool-result-max',
    default: 20_000,
    parse: int(500, 10_000_000),
    help: 'characters of a tool result sent to the model; longer results keep their head and tail, with a note',
  },
  llmImages: {
    env: 'AIDO_LLM_IMAGES',
    flag: '--llm-images',
    default: false,
    parse: bool,
    help: 'send plots to the model as image parts (the model must accept images); false: a short text note',
  },
  chatTtlS: {
    env: 'AIDO_CHAT_TTL',
    flag: '--chat-ttl',
    default: 1800,
    parse: num(1, 86400 * 7),
    help: 'seconds a chat conversation may sit idle before it is dropped and its own kernel shut down',
  },
  maxChats: {
    env: 'AIDO_MAX_CHATS',
    flag: '--max-chats',
    default: 64,
    parse: int(1, 100_000),
    help: 'chat conversations kept at once; past it POST /api/chat without a conversation_id is refused with 403',
  },
  chatMaxBytes: {
    env: 'AIDO_CHAT_MAX_BYTES',
    flag: '--chat-max-bytes',
    default: 8 * 1024 ** 2,
    parse: bytes(64 * 1024),
    help: 'history one chat conversation may hold (messages and steps); past it the conversation takes no new turn (413)',
  },
  maxMcpSessions: {
    env: 'AIDO_MAX_MCP_SESSIONS',
    flag: '--max-mcp-sessions',
    default: 64,
    parse: int(1, 100_000),
    help: 'open MCP sessions at most; an initialize past it is refused with 503 and an MCP error',
  },
  sandboxExecTimeoutS: {
    env: 'AIDO_SANDBOX_EXEC_TIMEOUT',
    flag: '--sandbox-exec-timeout',
    default: 30,
    parse: num(0.5, 3600),
    help: 'seconds a gateway helper in a sandbox may run (a download: without progress); past it: killed, 504',
  },
  maxDownloadBytes: {
    env: 'AIDO_MAX_DOWNLOAD_BYTES',
    flag: '--max-download-bytes',
    default: 256 * 1024 ** 2,
    parse: bytes(1),
    help: 'largest workspace file a download hands out (GET …/files/…); bigger: 413 before any byte is read',
  },
  deadlineSweep: {
    env: 'AIDO_DEADLINE_SWEEP',
    flag: '--deadline-sweep',
    default: true,
    parse: bool,
    help: 'after a deadline interrupt: kill processes the execution left; restart the kernel if threads still burn CPU',
  },
  wsPingIntervalS: {
    env: 'AIDO_WS_PING_INTERVAL',
    flag: '--ws-ping-interval',
    default: 30,
    parse: num(0, 3600),
    help: 'seconds between WebSocket pings; a client that misses two is dropped (0 disables)',
  },
  kernelStartTimeoutS: {
    env: 'AIDO_KERNEL_START_TIMEOUT',
    flag: '--kernel-start-timeout',
    default: 60,
    parse: num(1, 3600),
    help: 'seconds a new sandbox has to answer kernel_info',
  },
  replayMaxMessages: {
    env: 'AIDO_REPLAY_MAX_MESSAGES',
    flag: '--replay-max-messages',
    default: 2000,
    parse: int(0, 1_000_000),
    help: 'messages kept for a disconnected client session and replayed on reconnect',
  },
  replayMaxBytes: {
    env: 'AIDO_REPLAY_MAX_BYTES',
    flag: '--replay-max-bytes',
    default: 16 * 1024 ** 2,
    parse: bytes(0),
    help: 'bytes kept for a disconnected client session',
  },
  replayTtlS: {
    env: 'AIDO_REPLAY_TTL',
    flag: '--replay-ttl',
    default: 120,
    parse: num(0, 86400),
    help: 'seconds a disconnected client session (its ZMQ identity and buffer) is kept',
  },
  iopubMsgRateLimit: {
    env: 'AIDO_IOPUB_MSG_RATE_LIMIT',
    flag: '--iopub-msg-rate-limit',
    default: 20_000,
    parse: num(0, 1e9),
    help: 'iopub messages (any type) per second per kernel over a 3 s window before output is dropped (0: off)',
  },
  iopubDataRateLimit: {
    env: 'AIDO_IOPUB_DATA_RATE_LIMIT',
    flag: '--iopub-data-rate-limit',
    default: 256 * 1024 ** 2,
    parse: bytes(0),
    help: 'iopub bytes per second per kernel over a 3 s window before output is dropped (0: off)',
  },
  zmqMaxMessageSize: {
    env: 'AIDO_ZMQ_MAX_MESSAGE_SIZE',
    flag: '--zmq-max-message-size',
    default: 64 * 1024 ** 2,
    parse: bytes(1024 ** 2),
    help: 'largest ZeroMQ message (and frame) from a kernel; bigger ones are dropped as protocol violations',
  },
  zmqReceiveHwm: {
    env: 'AIDO_ZMQ_RCVHWM',
    flag: '--zmq-rcvhwm',
    default: 1000,
    parse: int(1, 1_000_000),
    help: 'messages libzmq queues per gateway socket (receive high-water mark) before it stops reading a kernel',
  },
  kernelMaxFrames: {
    env: 'AIDO_KERNEL_MAX_FRAMES',
    flag: '--kernel-max-frames',
    default: 1024,
    parse: int(8, 1_000_000),
    help: 'most ZeroMQ frames (buffers included) in one message from a kernel; more: a protocol violation',
  },
  kernelMaxHeaderBytes: {
    env: 'AIDO_KERNEL_MAX_HEADER',
    flag: '--kernel-max-header',
    default: 64 * 1024,
    parse: bytes(1024),
    help: 'largest header or parent_header from a kernel (and header from a client), checked before any parse',
  },
  kernelMaxMetadataBytes: {
    env: 'AIDO_KERNEL_MAX_METADATA',
    flag: '--kernel-max-metadata',
    default: 1024 ** 2,
    parse: bytes(1024),
    help: 'largest metadata part from a kernel, checked before any parse',
  },
  kernelAbuseLimit: {
    env: 'AIDO_KERNEL_ABUSE_LIMIT',
    flag: '--kernel-abuse-limit',
    default: 20,
    parse: int(0, 1_000_000),
    help: 'protocol violations after which a kernel is killed with reason "protocol abuse" (0: only report)',
  },
  wsMaxBufferedBytes: {
    env: 'AIDO_WS_MAX_BUFFERED',
    flag: '--ws-max-buffered',
    default: 64 * 1024 ** 2,
    parse: bytes(1024 ** 2),
    help: 'unsent bytes per channels WebSocket; past it the client is dropped (1008), told of the gap on reconnect',
  },
  maxClientSessions: {
    env: 'AIDO_MAX_CLIENT_SESSIONS',
    flag: '--max-client-sessions',
    default: 32,
    parse: int(1, 100_000),
    help: 'client sessions (session_ids: 3 ZeroMQ sockets each) per kernel; the oldest disconnected is evicted',
  },
  cullIdleTimeoutS: {
    env: 'AIDO_CULL_IDLE_TIMEOUT',
    flag: '--cull-idle-timeout',
    default: 0,
    parse: num(0, 365 * 86400),
    help: 'seconds without activity after which a kernel is shut down (culled); dead kernels too (0: off)',
  },
  cullIntervalS: {
    env: 'AIDO_CULL_INTERVAL',
    flag: '--cull-interval',
    default: 60,
    parse: num(0.05, 86400),
    help: 'seconds between checks for idle kernels',
  },
  cullConnected: {
    env: 'AIDO_CULL_CONNECTED',
    flag: '--cull-connected',
    default: false,
    parse: bool,
    help: 'also cull idle kernels that have a client connected (told first: a notice and status dead)',
  },
  cullBusy: {
    env: 'AIDO_CULL_BUSY',
    flag: '--cull-busy',
    default: false,
    parse: bool,
    help: 'also cull busy kernels whose execution produced no activity for the idle timeout',
  },
  egressAllow: {
    env: 'AIDO_EGRESS_ALLOW',
    flag: '--egress-allow',
    default: [...DEFAULT_EGRESS_ALLOW],
    parse: egressList,
    keepEmpty: true,
    help: 'hosts kernels may reach via the egress proxy: presets pypi, conda, host[:port] (comma list; empty: no egress)',
  },
  egressBytes: {
    env: 'AIDO_EGRESS_BYTES',
    flag: '--egress-bytes',
    default: 1024 ** 3,
    parse: bytes(1024),
    help: 'bytes (both ways) a kernel may move through the egress proxy over its life',
  },
  egressConnections: {
    env: 'AIDO_EGRESS_CONNECTIONS',
    flag: '--egress-connections',
    default: 16,
    parse: int(1, 4096),
    help: 'concurrent egress proxy connections per kernel',
  },
  egressDialTimeoutS: {
    env: 'AIDO_EGRESS_DIAL_TIMEOUT',
    flag: '--egress-dial-timeout',
    default: 10,
    parse: num(0.1, 600),
    help: 'seconds the egress proxy waits for a name lookup plus the upstream connect',
  },
  egressIdleTimeoutS: {
    env: 'AIDO_EGRESS_IDLE_TIMEOUT',
    flag: '--egress-idle-timeout',
    default: 60,
    parse: num(1, 86400),
    help: 'seconds an egress connection may carry no bytes before it is closed',
  },
  pipSizeBytes: {
    env: 'AIDO_PIP_SIZE',
    flag: '--pip-size',
    default: 128 * 1024 ** 2,
    parse: bytes(1024 ** 2),
    help: 'size of the exec-able /pkgs tmpfs pip installs into (egress on only; counts against the memory limit)',
  },
  logLevel: {
    env: 'AIDO_LOG_LEVEL',
    flag: '--log-level',
    default: 'info',
    parse: logLevel,
    help: 'pino log level',
  },
  dockerSocket: {
    env: 'AIDO_DOCKER_SOCKET',
    flag: '--docker-socket',
    default: '/var/run/docker.sock',
    parse: str,
    help: 'Docker Engine API socket',
  },
} satisfies Record<string, Entry<unknown>>;

type Table = typeof TABLE;
/** The validated configuration. */
export type GatewayConfig = {
  -readonly [K in keyof Table]: Table[K]['default'] extends () => infer R ? R : Table[K]['default'];
};

/** A configuration that could not be loaded; names every bad key. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
}

/**
 * Loads the configuration from `env` and `argv` (flags win over env). Unknown flags and every
 * unparsable value are collected and reported together.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  argv: readonly string[] = process.argv.slice(2),
  overrides: Partial<GatewayConfig> = {},
): GatewayConfig {
  const problems: string[] = [];
  const fromFlags = new Map<string, string>();
  const byFlag = new Map(Object.entries(TABLE).map(([k, e]) => [e.flag, k]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const key = byFlag.get(flag);
    if (!key) {
      problems.push(`unknown argument ${arg}`);
      continue;
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) problems.push(`${flag}: missing value`);
    else fromFlags.set(key, value);
  }
  const out: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(TABLE) as [string, Entry<unknown>][]) {
    const raw = fromFlags.get(key) ?? env[entry.env];
    if (key in overrides) {
      out[key] = (overrides as Record<string, unknown>)[key];
    } else if (raw === undefined || (raw === '' && key !== 'authToken' && !entry.keepEmpty)) {
      out[key] =
        typeof entry.default === 'function' ? (entry.default as () => unknown)() : entry.default;
    } else {
      try {
        out[key] = entry.parse(raw);
      } catch (err) {
        problems.push(`${entry.env} / ${entry.flag}: ${(err as Error).message}`);
      }
    }
  }
  const cfg = out as GatewayConfig;
  if (fromFlags.has('authToken') && !('authToken' in overrides)) {
    problems.push(
      '--auth-token: refused, a token on the command line is visible to every local user (ps); use AIDO_AUTH_TOKEN or --auth-token-file',
    );
  }
  if (typeof cfg.authTokenFile === 'string' && cfg.authTokenFile !== '') {
    if (cfg.authToken !== '' && !('authToken' in overrides)) {
      problems.push('AIDO_AUTH_TOKEN and AIDO_AUTH_TOKEN_FILE are both set: choose one');
    } else {
      try {
        cfg.authToken = (readFileSync(cfg.authTokenFile, 'utf8').split('\n')[0] ?? '').trim();
        if (cfg.authToken === '')
          problems.push(`AIDO_AUTH_TOKEN_FILE: ${cfg.authTokenFile} is empty`);
      } catch (err) {
        problems.push(
          `AIDO_AUTH_TOKEN_FILE: cannot read ${cfg.authTokenFile}: ${(err as Error).message}`,
        );
      }
    }
  }
  if (
    typeof cfg.authToken === 'string' &&
    cfg.authToken !== '' &&
    cfg.authToken.length < MIN_TOKEN_LENGTH
  ) {
    problems.push(
      `AIDO_AUTH_TOKEN: too short (${cfg.authToken.length} characters; at least ${MIN_TOKEN_LENGTH}, e.g. openssl rand -hex 32)`,
    );
  }
  if (problems.length === 0) {
    // Combinations too: e.g. /tmp plus /workspace must fit in the memory limit (tmpfs pages count).
    const limits = {
      memoryBytes: cfg.memoryBytes,
      cpus: cfg.cpus,
      cpuShares: cfg.cpuShares,
      pids: cfg.pids,
      nofile: cfg.nofile,
      tmpSizeBytes: cfg.tmpSizeBytes,
      workspaceSizeBytes: cfg.workspaceSizeBytes,
    };
    for (const p of validateLimits(limits)) problems.push(`sandbox limits: ${p}`);
    if (cfg.egressAllow.length > 0)
      for (const p of validateEgress(limits, { pipSizeBytes: cfg.pipSizeBytes }))
        problems.push(`AIDO_PIP_SIZE / --pip-size: ${p}`);
  }
  if (cfg.llmBaseUrl !== '' && cfg.llmModel === '')
    problems.push('AIDO_LLM_MODEL / --llm-model: required when AIDO_LLM_BASE_URL is set');
  if (cfg.llmApiKeyFile !== '') {
    try {
      accessSync(cfg.llmApiKeyFile, constants.R_OK);
    } catch (err) {
      problems.push(
        `AIDO_LLM_API_KEY_FILE / --llm-api-key-file: cannot read ${cfg.llmApiKeyFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  if (cfg.authToken === '') cfg.authToken = randomBytes(24).toString('hex');
  return cfg;
}

/** Whether the token was generated (not supplied), so the CLI prints it. */
export function tokenWasGenerated(env: NodeJS.ProcessEnv, argv: readonly string[]): boolean {
  const given = (flag: string): boolean => argv.some((a) => a === flag || a.startsWith(`${flag}=`));
  return (
    !env.AIDO_AUTH_TOKEN &&
    !env.AIDO_AUTH_TOKEN_FILE &&
    !given('--auth-token') &&
    !given('--auth-token-file')
  );
}

function showDefault(v: unknown): string {
  // Byte sizes read better as 512m than as 536870912.
  if (typeof v === 'number' && v >= 1024 ** 2 && v % 1024 ** 2 === 0) return `${v / 1024 ** 2}m`;
  if (Array.isArray(v)) return v.join(',');
  return String(v);
}

/** The configuration table as rows, for `--help` and the README. */
export function configRows(): { env: string; flag: string; default: string; help: string }[] {
  return Object.values(TABLE).map((e: Entry<unknown>) => ({
    env: e.env,
    flag: e.flag,
    default: showDefault(e.default),
    help: e.help,
  }));
}
