/**
 * A DEALER straight on a kernel's shell socket, for the benchmarks' "direct ZeroMQ" series: the
 * same `pass` as a WebSocket client sends, without the gateway in the path, so the gateway's
 * share of a round trip is the difference.
 */
import * as zmq from 'zeromq';
import {
  decodeZmq,
  encodeZmq,
  executeRequest,
  Signer,
  toRaw,
  type Channel,
} from '../protocol/index.js';

/** A DEALER on a kernel's shell socket that times execute_request → execute_reply. */
export function directShell(endpoint: string, key: string, session: string) {
  const signer = new Signer(key);
  const dealer = new zmq.Dealer({ routingId: session, linger: 0 });
  dealer.connect(endpoint);
  const shell: Channel = 'shell';
  return {
    async once(): Promise<number> {
      const msg = toRaw(executeRequest(session, 'pass'));
      const t0 = process.hrtime.bigint();
      await dealer.send(encodeZmq(msg, signer));
      for (;;) {
        const { raw } = decodeZmq(await dealer.receive(), shell, signer);
        if (raw.header.msg_type === 'execute_reply') break;
      }
      return Number(process.hrtime.bigint() - t0) / 1e6;
    },
    close(): void {
      dealer.close();
    },
  };
}
