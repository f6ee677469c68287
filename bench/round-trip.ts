/**
 * Round trip of a `pass` execution (execute_request → execute_reply) through the gateway's
 * WebSocket against the direct ZeroMQ round trip to the same kernel, interleaved in one run.
 * Usage: npx tsx bench/round-trip.ts   (BENCH_N, default 500 per path)
 */
import * as zmq from 'zeromq';
import { WebSocket } from 'ws';
import {
  createMessage,
  decodeV1,
  decodeZmq,
  encodeV1,
  encodeZmq,
  Signer,
  toRaw,
  V1_PROTOCOL,
  type RawMessage,
} from '../protocol/index.js';
import { startGatewayProcess } from './gateway-process.js';
import { printTable, progress, summarize } from './stats.js';

const N = Number(process.env.BENCH_N ?? 500);
const BLOCK = 50;
const content = {
  code: 'pass',
  silent: false,
  store_history: false,
  user_expressions: {},
  allow_stdin: false,
  stop_on_error: true,
};

async function main(): Promise<void> {
  progress('starting the gateway and one kernel');
  const gw = await startGatewayProcess();
  try {
    const res = await gw.api('/api/kernels', { method: 'POST', body: '{}' });
    const { id } = (await res.json()) as { id: string };
    const [conn] = gw.connectionFiles();
    if (!conn) throw new Error('no kernel directory');

    // Through the gateway: one v1 WebSocket client.
    const session = 'bench-ws';
    const ws = new WebSocket(
      `${gw.wsBase}/api/kernels/${id}/channels?session_id=${session}`,
      [V1_PROTOCOL],
      { headers: { Authorization: `token ${gw.token}` } },
    );
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    let wsWaiter: ((raw: RawMessage) => void) | undefined;
    ws.on('message', (data: Buffer) => {
      const raw = decodeV1(data);
      if (raw.header.msg_type === 'execute_reply') wsWaiter?.(raw);
    });
    const viaGateway = async (): Promise<number> => {
      const msg = toRaw(
        createMessage({ msgType: 'execute_request', channel: 'shell', session, content }),
      );
      const t0 = process.hrtime.bigint();
      const done = new Promise<void>(
        (resolve) =>
          (wsWaiter = () => {
            resolve();
          }),
      );
      ws.send(encodeV1(msg));
      await done;
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };

    // Direct: a DEALER on the same kernel's shell socket.
    const signer = new Signer(conn.key);
    const dealer = new zmq.Dealer({ routingId: 'bench-direct', linger: 0 });
    dealer.connect(`ipc://${conn.dir}/k-1`);
    const direct = async (): Promise<number> => {
      const msg = toRaw(
        createMessage({
          msgType: 'execute_request',
          channel: 'shell',
          session: 'bench-direct',
          content,
        }),
      );
      const t0 = process.hrtime.bigint();
      await dealer.send(encodeZmq(msg, signer));
      for (;;) {
        const { raw } = decodeZmq(await dealer.receive(), 'shell', signer);
        if (raw.header.msg_type === 'execute_reply') break;
      }
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };

    progress('warming up');
    for (let i = 0; i < 30; i++) {
      await viaGateway();
      await direct();
    }
    const g: number[] = [];
    const d: number[] = [];
    progress(`measuring ${N} round trips per path, interleaved in blocks of ${BLOCK}`);
    while (g.length < N) {
      for (let i = 0; i < BLOCK && g.length < N; i++) g.push(await viaGateway());
      for (let i = 0; i < BLOCK && d.length < N; i++) d.push(await direct());
      if (g.length % 100 === 0) progress(`${g.length}/${N}`);
    }
    ws.close();
    dealer.close();
    const sg = summarize(g);
    const sd = summarize(d);
    const added = { p50: +(sg.p50 - sd.p50).toFixed(3), p99: +(sg.p99 - sd.p99).toFixed(3) };
    printTable(
      `pass round trip, ms (n=${N} each)`,
      ['path', 'min', 'p50', 'p95', 'p99', 'max'],
      [
        ['gateway WebSocket (v1)', sg.min, sg.p50, sg.p95, sg.p99, sg.max],
        ['direct ZeroMQ', sd.min, sd.p50, sd.p95, sd.p99, sd.max],
        ['added by the gateway', '', added.p50, '', added.p99, ''],
        [
          'ratio gateway/direct',
          '',
          (sg.p50 / sd.p50).toFixed(2),
          '',
          (sg.p99 / sd.p99).toFixed(2),
          '',
        ],
      ],
    );
    process.stdout.write(
      `${JSON.stringify({ bench: 'round-trip', n: N, unit: 'ms', gateway: sg, direct: sd, added, ratio_p50: +(sg.p50 / sd.p50).toFixed(3) })}\n`,
    );
  } finally {
    await gw.stop();
  }
}

await main();
