/**
 * WsSink's batching against a real ws server and client on loopback: a burst sent in one
 * event-loop turn leaves in one write and arrives whole and in order; a fan-out encodes once; a
 * client that does not read is still dropped at the send cap while frames are held.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeV1, toRaw, type RawMessage } from '../../../protocol/index.js';
import type { ClientChannels } from '../../../gateway/channels/client-channels.js';
import { SLOW_CLIENT_CLOSE_CODE, WsSink } from '../../../gateway/channels/ws-sink.js';

function stream(i: number, text = `line ${i}\n`): RawMessage {
  return toRaw({
    channel: 'iopub',
    header: {
      msg_id: `m-${i}`,
      msg_type: 'stream',
      session: 'kernel',
      username: 'kernel',
      date: '2026-12-01T00:00:00.000000Z',
      version: '5.3',
    },
    parent_header: {},
    metadata: {},
    content: { name: 'stdout', text },
    buffers: [],
  });
}

/** The parts of ClientChannels a sink talks to, recording what it is told. */
function channelsStub(): ClientChannels & { gaps: string[]; detached: number } {
  const stub = {
    sessionId: 's1',
    gaps: [] as string[],
    detached: 0,
    detach() {
      stub.detached++;
    },
    noteGap(reason: string) {
      stub.gaps.push(reason);
    },
    receive() {
      /* client frames are not part of these tests */
    },
  };
  return stub as unknown as ClientChannels & { gaps: string[]; detached: number };
}

interface Pair {
  server: Server;
  wss: WebSocketServer;
  /** The server side of the connection. */
  ws: WebSocket;
  client: WebSocket;
  /** Frames the client received, as they arrived. */
  received: Buffer[];
  closed: Promise<number>;
}

async function connect(): Promise<Pair> {
  const server = createServer();
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const serverSide = new Promise<WebSocket>((r) => wss.once('connection', r));
  const client = new WebSocket(`ws://127.0.0.1:${port}`);
  const received: Buffer[] = [];
  client.on('message', (data: Buffer) => received.push(data));
  const closed = new Promise<number>((r) => client.once('close', r));
  await new Promise((r, j) => client.once('open', r).once('error', j));
  return { server, wss, ws: await serverSide, client, received, closed };
}

async function end(p: Pair): Promise<void> {
  p.client.terminate();
  p.ws.terminate();
  p.wss.close();
  await new Promise((r) => p.server.close(r));
}

function sinkOn(ws: WebSocket, channels: ClientChannels, maxBuffered = 1 << 30): WsSink {
  return new WsSink(ws, 'v1', channels, () => undefined, 0, maxBuffered);
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Counts the system-call level writes of a socket (net.Socket's _write and _writev). */
function countWrites(ws: WebSocket): { writes: number; chunks: number } {
  const socket = (ws as unknown as { _socket: Record<string, unknown> })._socket;
  const counts = { writes: 0, chunks: 0 };
  const write = socket._write as (...a: unknown[]) => void;
  const writev = socket._writev as (chunks: unknown[], ...a: unknown[]) => void;
  socket._write = function (this: unknown, ...a: unknown[]) {
    counts.writes++;
    counts.chunks++;
    write.apply(this, a);
  };
  socket._writev = function (this: unknown, chunks: unknown[], ...a: unknown[]) {
    counts.writes++;
    counts.chunks += chunks.length;
    writev.apply(this, [chunks, ...a]);
  };
  return counts;
}

describe('WsSink batching', () => {
  it('a burst sent in one turn arrives intact and in order, in one socket write', async () => {
    const p = await connect();
    try {
      const sink = sinkOn(p.ws, channelsStub());
      const counts = countWrites(p.ws);
      const burst = Array.from({ length: 500 }, (_, i) => stream(i));
      for (const raw of burst) expect(sink.send(raw)).to.equal(true);
      expect(counts.writes, 'nothing is written before the turn ends').to.equal(0);
      await until(() => p.received.length === burst.length);
      expect(counts.writes, 'the whole burst leaves in one write').to.equal(1);
      // ws writes a header and a payload per message.
      expect(counts.chunks).to.equal(2 * burst.length);
      const got = p.received.map((b) => decodeV1(b));
      expect(got.map((m) => m.header.msg_id)).to.deep.equal(burst.map((m) => m.header.msg_id));
      for (const [i, m] of got.entries()) expect(m.content).to.deep.equal(burst[i]!.content);

      // The next turn's messages are a new batch, after the first.
      sink.send(stream(500));
      sink.send(stream(501));
      await until(() => p.received.length === 502);
      expect(counts.writes).to.equal(2);
      expect(p.received.slice(500).map((b) => decodeV1(b).header.msg_id)).to.deep.equal([
        'm-500',
        'm-501',
      ]);
    } finally {
      await end(p);
    }
  });

  it('encodes a fanned-out message once and sends the same bytes to every client', async () => {
    const a = await connect();
    const b = await connect();
    try {
      const sinks = [sinkOn(a.ws, channelsStub()), sinkOn(b.ws, channelsStub())];
      const sent: unknown[] = [];
      for (const ws of [a.ws, b.ws]) {
        const send = ws.send.bind(ws);
        ws.send = ((data: unknown, ...rest: never[]) => {
          sent.push(data);
          (send as (...x: unknown[]) => void)(data, ...rest);
        }) as typeof ws.send;
      }
      const raw = stream(1);
      for (const s of sinks) s.send(raw);
      expect(sent).to.have.length(2);
      expect(sent[0], 'one Buffer for both sockets').to.equal(sent[1]);
      await until(() => a.received.length === 1 && b.received.length === 1);
      expect(a.received[0]).to.deep.equal(b.received[0]);
      expect(decodeV1(a.received[0]!).header.msg_id).to.equal('m-1');
    } finally {
      await end(a);
      await end(b);
    }
  });

  it('a client that does not read is dropped at the cap, even within one held batch', async () => {
    const p = await connect();
    try {
      const channels = channelsStub();
      const cap = 1 << 20;
      const sink = sinkOn(p.ws, channels, cap);
      const big = 64 * 1024;
      let delivered = 0;
      // One turn: every frame is held (corked) until it ends, so the cap must see held bytes.
      for (let i = 0; i < 1000; i++) {
        if (!sink.send(stream(i, 'x'.repeat(big)))) break;
        delivered++;
      }
      expect(delivered, 'stopped at the cap plus one message').to.be.at.most(cap / big + 1);
      expect(delivered).to.be.at.least(cap / big);
      expect(channels.gaps, 'the session learns of the gap').to.have.length(1);
      expect(sink.send(stream(9999)), 'nothing more is sent').to.equal(false);
      expect(await p.closed).to.equal(SLOW_CLIENT_CLOSE_CODE);
    } finally {
      await end(p);
    }
  });

  it('a client that stops reading across turns is dropped at the cap', async () => {
    const p = await connect();
    try {
      const channels = channelsStub();
      const cap = 256 * 1024;
      const sink = sinkOn(p.ws, channels, cap);
      // The client's TCP socket stops reading: loopback buffers fill, then the gateway's.
      (p.client as unknown as { _socket: { pause(): void } })._socket.pause();
      const big = 16 * 1024;
      let sent = 0;
      let refused = false;
      for (let turn = 0; turn < 2000 && !refused; turn++) {
        for (let i = 0; i < 8; i++) {
          if (!sink.send(stream(sent, 'y'.repeat(big)))) {
            refused = true;
            break;
          }
          sent++;
        }
        expect(p.ws.bufferedAmount, 'backlog bounded by the cap plus one turn').to.be.at.most(
          cap + 9 * (big + 200),
        );
        await new Promise((r) => setImmediate(r));
      }
      expect(refused, 'the slow client was dropped').to.equal(true);
      expect(channels.gaps).to.have.length(1);
    } finally {
      await end(p);
    }
  });
});
