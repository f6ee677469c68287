/**
 * The channels WebSocket: `GET /api/kernels/{id}/channels` upgrades after auth (header or
 * `?token=`), the origin check and the kernel lookup — all before a WebSocket exists. The v1
 * subprotocol is selected only when the client offers it; otherwise the legacy framing is used.
 * The transport is built here: the kernel gets the connection as a ClientSink (a WsSink).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { V1_PROTOCOL, type WsFraming } from '../../protocol/index.js';
import { isAuthorized, originAllowed } from './auth.js';
import type { GatewayConfig } from '../base/config.js';
import { GatewayError } from '../base/errors.js';
import type { KernelRegistry } from '../kernel/kernel-registry.js';
import type { Kernel } from '../kernel/kernel.js';
import { redactUrl, type Logger } from '../base/logger.js';
import { clip } from '../base/log-limit.js';
import type { MetricsSink } from '../base/metrics.js';
import type { ClientChannels } from '../channels/client-channels.js';
import { WsSink } from '../channels/ws-sink.js';
import { CloseCode } from '../base/close-codes.js';
import { refuseUpgrade } from './json-errors.js';

const CHANNELS_PATH = /^\/api\/kernels\/([^/]+)\/channels\/?$/;
/** Session ids become ZMQ routing ids: printable, bounded. */
const SESSION_ID = /^[\x21-\x7e]{1,128}$/;

export interface ChannelsServer {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

export function createChannelsServer(
  config: GatewayConfig,
  kernels: KernelRegistry,
  logger: Logger,
  isDraining: () => boolean,
  metrics?: MetricsSink,
): ChannelsServer {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxFrameBytes,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(V1_PROTOCOL) ? V1_PROTOCOL : false),
  });
  /** Everything that must hold before a WebSocket exists. */
  function check(
    req: IncomingMessage,
    url: URL,
  ): GatewayError | { kernel: Kernel; sessionId: string } {
    if (isDraining()) return new GatewayError('SHUTTING_DOWN', 'the gateway is shutting down');
    const m = CHANNELS_PATH.exec(url.pathname);
    if (!m?.[1]) return new GatewayError('NOT_FOUND', 'Not Found');
    if (!isAuthorized(req, url, config.authToken, true))
      return new GatewayError('AUTH_REQUIRED', 'a valid token is required');
    if (!originAllowed(req, config.allowOrigin)) {
      return new GatewayError(
        'FORBIDDEN_ORIGIN',
        `origin ${req.headers.origin ?? ''} is not allowed`,
      );
    }
    let kernelId: string;
    try {
      kernelId = decodeURIComponent(m[1]);
    } catch {
      return new GatewayError('BAD_REQUEST', 'the kernel id in the URL is not valid %-encoding');
    }
    const kernel = kernels.find(kernelId);
    if (!kernel) return new GatewayError('KERNEL_NOT_FOUND', `Kernel does not exist: ${m[1]}`);
    const sessionId = url.searchParams.get('session_id') || randomUUID();
    if (!SESSION_ID.test(sessionId))
      return new GatewayError('BAD_REQUEST', 'session_id must be 1-128 printable ASCII characters');
    return { kernel, sessionId };
  }

  /**
   * Hands the kernel this connection as a client sink. A full client table refuses it with 1013
   * (try again later: a session frees up when its client disconnects and expires).
   */
  function attach(
    kernel: Kernel,
    ws: WebSocket,
    sessionId: string,
    protocol: WsFraming,
    log: Logger,
  ): void {
    let client: ClientChannels;
    try {
      client = kernel.channelsFor(sessionId);
    } catch (err) {
      const message = err instanceof GatewayError ? err.message : 'cannot attach';
      log.info({ kernel: kernel.id, session: clip(sessionId) }, message);
      ws.close(CloseCode.TRY_AGAIN_LATER, message.slice(0, 120));
      return;
    }
    const sink = new WsSink(
      ws,
      protocol,
      client,
      (level, msg, extra = {}) => {
        kernel.log(level, msg, { session: sessionId, ...extra });
      },
      config.wsPingIntervalS * 1000,
      config.wsMaxBufferedBytes,
      metrics,
    );
    kernel.attachSink(client, sink);
  }

  return {
    handleUpgrade(req, socket, head) {
      const log = logger.child({ url: redactUrl(req.url ?? '') });
      socket.on('error', () => undefined);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://gateway');
      } catch {
        // A request target that is no URL (`//[`): thrown here, it would end the process.
        refuseUpgrade(socket, new GatewayError('BAD_REQUEST', 'the request URL is malformed'));
        return;
      }
      const checked = check(req, url);
      if (checked instanceof GatewayError) {
        log.info({ code: checked.code, origin: req.headers.origin }, 'channels upgrade refused');
        refuseUpgrade(socket, checked);
        return;
      }
      const { kernel, sessionId } = checked;
      if (socket instanceof Socket) socket.setNoDelay(true);
      wss.handleUpgrade(req, socket, head, (ws) => {
        const protocol = ws.protocol === V1_PROTOCOL ? 'v1' : 'legacy';
        log.info({ kernel: kernel.id, session: sessionId, protocol }, 'channels connected');
        attach(kernel, ws, sessionId, protocol, log);
      });
    },
    close() {
      for (const ws of wss.clients) ws.close(CloseCode.GOING_AWAY, 'gateway shutting down');
      wss.close();
    },
  };
}
