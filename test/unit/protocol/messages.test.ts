import { expect } from 'chai';
import fc from 'fast-check';
import {
  CHANNELS,
  PROTOCOL_VERSION,
  ProtocolError,
  REQUEST_CHANNEL,
  channelForRequest,
  createMessage,
  fromRaw,
  isChannel,
  isClientMsgType,
  isProtocolError,
  parentHeaderOf,
  parentMsgId,
  parentOf,
  parseHeader,
  toRaw,
  type Header,
  type JupyterMessage,
  type Message,
  type ProtocolErrorCode,
  type RawMessage,
} from '../../../protocol/index.js';
import { messageArb, normalise } from './arbitraries.js';

/** Runs `fn`, expecting a ProtocolError with `code`. */
function expectCode(fn: () => unknown, code: ProtocolErrorCode): void {
  expect(fn).to.throw(ProtocolError).with.property('code', code);
}

const HEADER: Header = {
  msg_id: 'm-1',
  session: 's-1',
  username: '',
  date: '2024-01-01T00:00:00.000Z',
  msg_type: 'execute_request',
  version: '5.3',
};

function headerBytes(h: object): Buffer {
  return Buffer.from(JSON.stringify(h));
}

describe('protocol/errors', () => {
  it('carries a stable code and a name', () => {
    const err = new ProtocolError('BAD_JSON', 'content is not valid JSON');
    expect(err).to.be.instanceOf(Error);
    expect(err.code).to.equal('BAD_JSON');
    expect(err.name).to.equal('ProtocolError');
    expect(isProtocolError(err)).to.equal(true);
    expect(isProtocolError(err, 'BAD_JSON')).to.equal(true);
    expect(isProtocolError(err, 'BAD_HEADER')).to.equal(false);
    expect(isProtocolError(new Error('x'))).to.equal(false);
  });
});

describe('protocol/channels', () => {
  it('knows exactly the four message channels', () => {
    expect([...CHANNELS].sort()).to.deep.equal(['control', 'iopub', 'shell', 'stdin']);
    for (const c of CHANNELS) expect(isChannel(c)).to.equal(true);
    for (const c of ['hb', 'Shell', '', 'shell ', '__proto__'])
      expect(isChannel(c)).to.equal(false);
  });
});

describe('protocol/message-types routing', () => {
  it('sends interrupt, shutdown and debug requests on control', () => {
    expect(REQUEST_CHANNEL.interrupt_request).to.equal('control');
    expect(channelForRequest('interrupt_request')).to.equal('control');
    expect(channelForRequest('shutdown_request')).to.equal('control');
    expect(channelForRequest('debug_request')).to.equal('control');
  });

  it('sends execute and kernel_info requests on shell, and input_reply on stdin', () => {
    expect(channelForRequest('execute_request')).to.equal('shell');
    expect(channelForRequest('kernel_info_request')).to.equal('shell');
    expect(channelForRequest('comm_msg')).to.equal('shell');
    expect(channelForRequest('input_reply')).to.equal('stdin');
  });

  it('has no route for replies, IOPub types, connect_request or unknown names', () => {
    for (const t of ['execute_reply', 'status', 'stream', 'connect_request', 'nope', '']) {
      expect(channelForRequest(t), t).to.equal(undefined);
      expect(isClientMsgType(t), t).to.equal(false);
    }
  });

  it('finds nothing for Object.prototype names (regression: untrusted msg_type as a key)', () => {
    for (const t of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      expect(channelForRequest(t), t).to.equal(undefined);
      expect(REQUEST_CHANNEL[t], t).to.equal(undefined);
    }
  });

  it('is frozen', () => {
    expect(Object.isFrozen(REQUEST_CHANNEL)).to.equal(true);
  });
});

describe('protocol/header parseHeader', () => {
  it('parses a valid header and keeps unknown fields', () => {
    const h = parseHeader(headerBytes({ ...HEADER, extra: 1, subshell_id: null }));
    expect(h).to.deep.equal({ ...HEADER, extra: 1, subshell_id: null });
  });

  it('accepts an empty username and session (JupyterLab sends username "")', () => {
    expect(parseHeader(headerBytes({ ...HEADER, username: '', session: '' })).username).to.equal(
      '',
    );
  });

  it('refuses bytes that are not JSON with BAD_JSON', () => {
    expectCode(() => parseHeader(Buffer.from('{"msg_id":')), 'BAD_JSON');
    expectCode(() => parseHeader(Buffer.alloc(0)), 'BAD_JSON');
  });

  it('refuses non-object headers with BAD_HEADER', () => {
    for (const v of ['[]', 'null', '"x"', '3']) {
      expectCode(() => parseHeader(Buffer.from(v)), 'BAD_HEADER');
    }
  });

  for (const field of ['msg_id', 'session', 'username', 'date', 'msg_type', 'version'] as const) {
    it(`refuses a header whose ${field} is missing or not a string`, () => {
      const rest = Object.fromEntries(Object.entries(HEADER).filter(([k]) => k !== field));
      expectCode(() => parseHeader(headerBytes(rest)), 'BAD_HEADER');
      expectCode(() => parseHeader(headerBytes({ ...HEADER, [field]: 5 })), 'BAD_HEADER');
    });
  }

  it('refuses an empty msg_id or msg_type (the routing keys)', () => {
    expectCode(() => parseHeader(headerBytes({ ...HEADER, msg_id: '' })), 'BAD_HEADER');
    expectCode(() => parseHeader(headerBytes({ ...HEADER, msg_type: '' })), 'BAD_HEADER');
  });

  it('refuses a subshell_id that is neither string nor null', () => {
    expectCode(() => parseHeader(headerBytes({ ...HEADER, subshell_id: 3 })), 'BAD_HEADER');
  });

  it('names the bad field in the message', () => {
    expect(() => parseHeader(headerBytes({ ...HEADER, version: 5 }))).to.throw(
      ProtocolError,
      'header.version',
    );
  });
});

describe('protocol/messages toRaw/fromRaw', () => {
  it('serialises each JSON part to UTF-8 JSON and keeps the parsed header', () => {
    const msg: JupyterMessage = {
      channel: 'shell',
      header: HEADER,
      parent_header: {},
      metadata: { a: 'é' },
      content: { code: '1+1' },
      buffers: [Buffer.from([1, 2, 3])],
    };
    const raw = toRaw(msg);
    expect(raw.headerBytes.toString()).to.equal(JSON.stringify(HEADER));
    expect(raw.parentHeader.toString()).to.equal('{}');
    expect(raw.metadata).to.deep.equal(Buffer.from('{"a":"é"}', 'utf8'));
    expect(raw.content.toString()).to.equal('{"code":"1+1"}');
    expect(raw.header).to.equal(HEADER);
    expect(raw.buffers[0]).to.equal(msg.buffers[0]);
  });

  it('round-trips any message (property)', () => {
    fc.assert(
      fc.property(messageArb, (msg) => {
        expect(normalise(fromRaw(toRaw(msg)))).to.deep.equal(normalise(msg));
      }),
    );
  });

  function rawWith(
    parts: Partial<Record<'parentHeader' | 'metadata' | 'content', string>>,
  ): RawMessage {
    return {
      channel: 'shell',
      header: HEADER,
      headerBytes: headerBytes(HEADER),
      parentHeader: Buffer.from(parts.parentHeader ?? '{}'),
      metadata: Buffer.from(parts.metadata ?? '{}'),
      content: Buffer.from(parts.content ?? '{}'),
      buffers: [],
    };
  }

  it('refuses content or metadata that is not JSON, or not an object, with BAD_JSON', () => {
    for (const bad of ['{', '[]', 'null', '"s"', '1', '']) {
      expectCode(() => fromRaw(rawWith({ content: bad })), 'BAD_JSON');
      expectCode(() => fromRaw(rawWith({ metadata: bad })), 'BAD_JSON');
    }
  });

  it('refuses a parent header that is not an object (BAD_JSON) or not a header (BAD_HEADER)', () => {
    expectCode(() => fromRaw(rawWith({ parentHeader: '[]' })), 'BAD_JSON');
    expectCode(() => fromRaw(rawWith({ parentHeader: '{"msg_id":"x"}' })), 'BAD_HEADER');
  });
});

describe('protocol/messages createMessage', () => {
  it('fills a fresh UUID, an ISO date with Z, version 5.3 and an empty parent', () => {
    const a = createMessage({
      msgType: 'kernel_info_request',
      channel: 'shell',
      session: 'sess',
      content: {},
    });
    const b = createMessage({
      msgType: 'kernel_info_request',
      channel: 'shell',
      session: 'sess',
      content: {},
    });
    expect(a.header.msg_id).to.match(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(a.header.msg_id).to.not.equal(b.header.msg_id);
    expect(a.header.date).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(a.header.version).to.equal(PROTOCOL_VERSION).and.to.equal('5.3');
    expect(a.header).to.include({ session: 'sess', username: '', msg_type: 'kernel_info_request' });
    expect(a.parent_header).to.deep.equal({});
    expect(a.metadata).to.deep.equal({});
    expect(a.buffers).to.deep.equal([]);
    expect(a.channel).to.equal('shell');
    // The header it builds passes our own validation.
    expect(parseHeader(Buffer.from(JSON.stringify(a.header)))).to.deep.equal(a.header);
  });

  it('parents a reply to its request and copies the parent header', () => {
    const request = createMessage({
      msgType: 'execute_request',
      channel: 'shell',
      session: 'client',
      content: { code: 'while True: pass' },
    });
    const reply = createMessage({
      msgType: 'execute_reply',
      channel: 'shell',
      session: 'kernel',
      parent: request.header,
      username: 'gateway',
      metadata: { m: 1 },
      buffers: [Buffer.from('x')],
      content: {
        status: 'error',
        ename: 'Timeout',
        evalue: 'interrupted',
        traceback: [],
        execution_count: 1,
      },
    });
    expect(reply.parent_header).to.deep.equal(request.header);
    expect(reply.parent_header).to.not.equal(request.header);
    expect(reply.header.username).to.equal('gateway');
    expect(reply.metadata).to.deep.equal({ m: 1 });
    expect(reply.buffers).to.have.length(1);
    expect(parentOf(reply)?.msg_id).to.equal(request.header.msg_id);
  });

  it('types catalogue messages and still yields a JupyterMessage (compile-time checks)', () => {
    const status: Message<'status'> = createMessage({
      msgType: 'status',
      channel: 'iopub',
      session: 's',
      content: { execution_state: 'idle' },
    });
    const plain: JupyterMessage = status;
    const custom: JupyterMessage = createMessage({
      msgType: 'x_custom',
      channel: 'shell',
      session: 's',
      content: { anything: [1] },
    });
    const control: 'control' = REQUEST_CHANNEL.interrupt_request;
    expect(plain.header.msg_type).to.equal('status');
    expect(custom.header.msg_type).to.equal('x_custom');
    expect(control).to.equal('control');
    // Never called: `tsc --noEmit` fails if these stop being type errors.
    const typeErrors = (): void => {
      // @ts-expect-error interrupt_request goes on control, not shell
      createMessage({ msgType: 'interrupt_request', channel: 'shell', session: 's', content: {} });
      createMessage({
        msgType: 'status',
        channel: 'iopub',
        session: 's',
        // @ts-expect-error not an execution_state
        content: { execution_state: 'sleeping' },
      });
    };
    expect(typeErrors).to.be.a('function');
  });
});

describe('protocol/messages parent helpers', () => {
  const raw = (parent: string): Pick<RawMessage, 'parentHeader'> => ({
    parentHeader: Buffer.from(parent),
  });

  it('parentMsgId reads the parent msg_id', () => {
    expect(parentMsgId(raw(JSON.stringify(HEADER)))).to.equal('m-1');
  });

  it('parentMsgId is undefined, never throwing, for no parent or odd bytes', () => {
    for (const p of ['{}', '', '{', '[]', 'null', '{"msg_id":3}', '{"msg_id":""}']) {
      expect(parentMsgId(raw(p)), p).to.equal(undefined);
    }
  });

  it('parentHeaderOf parses the parent header, undefined for {}', () => {
    expect(parentHeaderOf(raw(JSON.stringify(HEADER)))).to.deep.equal(HEADER);
    expect(parentHeaderOf(raw('{}'))).to.equal(undefined);
  });

  it('parentHeaderOf throws ProtocolError for malformed parents', () => {
    expectCode(() => parentHeaderOf(raw('{')), 'BAD_JSON');
    expectCode(() => parentHeaderOf(raw('{"msg_id":"x"}')), 'BAD_HEADER');
  });
});
