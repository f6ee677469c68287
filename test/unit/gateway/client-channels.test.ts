/** A client session's delivery: what a sink cannot deliver is buffered for the next connection. */
import { expect } from 'chai';
import type { RawMessage } from '../../../protocol/messages.js';
import { toRaw } from '../../../protocol/messages.js';
import type { ChannelHost, ClientSink } from '../../../gateway/channels/client-channels.js';
import { ClientChannels } from '../../../gateway/channels/client-channels.js';

function stream(text: string): RawMessage {
  return toRaw({
    channel: 'iopub',
    header: {
      msg_id: `m-${text}`,
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

/** A sink that records what it was given and answers as told. */
function sink(deliverable: () => boolean): ClientSink & { got: string[] } {
  const got: string[] = [];
  return {
    got,
    send(raw) {
      if (!deliverable()) return false;
      got.push(raw.header.msg_id);
      return true;
    },
    close() {
      /* nothing to end */
    },
  };
}

const host = {
  notice: (text: string) => stream(`[gateway] ${text}`),
  log: () => undefined,
  expired: () => undefined,
} as unknown as ChannelHost;

describe('ClientChannels delivery', () => {
  it('regression: a message the sink can no longer deliver (socket closing, close not yet seen) is buffered and replayed, not lost', () => {
    const channels = new ClientChannels(host, 's1', {
      replayMaxMessages: 100,
      replayMaxBytes: 1 << 20,
      replayTtlMs: 60_000,
    });
    try {
      let open = true;
      const first = sink(() => open);
      channels.attach(first);
      channels.deliver(stream('a'));
      open = false; // the client vanished; its close event has not been handled yet
      channels.deliver(stream('b'));
      channels.deliver(stream('c'));
      expect(first.got).to.deep.equal(['m-a']);
      expect(channels.attached, 'the undeliverable sink is detached').to.equal(false);

      const second = sink(() => true);
      channels.attach(second);
      expect(second.got).to.deep.equal(['m-b', 'm-c']);
      channels.detach(first); // the late close event of the first socket changes nothing
      expect(channels.attached).to.equal(true);
    } finally {
      channels.close();
    }
  });
});
