/**
 * Cross-checks the ZMQ framing and signing against a real peer: jupyter_client's `Session`, the
 * code every Python kernel and Jupyter Server use to sign, serialise and verify messages.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  ProtocolError,
  Signer,
  createMessage,
  decodeLegacy,
  decodeV1,
  decodeZmq,
  encodeLegacy,
  encodeV1,
  encodeZmq,
  fromRaw,
  toRaw,
  type JupyterMessage,
  type ProtocolErrorCode,
} from '../../protocol/index.js';
import { requireJupyterClient, runPythonJson } from '../helpers/python.js';
import { messageArb, normalise } from './protocol/arbitraries.js';

/** Python side: build and sign messages with Session, print the frames as base64. */
const PY_SIGN = `
import base64, json, sys
from jupyter_client.session import Session

req = json.load(sys.stdin)
s = Session(key=req["key"].encode(), signature_scheme="hmac-sha256", username="py")
out = []
for m in req["messages"]:
    msg = s.msg(m["msg_type"], content=m["content"], parent=m.get("parent"), metadata=m.get("metadata"))
    frames = s.serialize(msg, ident=[base64.b64decode(i) for i in m.get("identities", [])])
    frames += [base64.b64decode(b) for b in m.get("buffers", [])]
    out.append({
        "frames": [base64.b64encode(f).decode() for f in frames],
        "msg_id": msg["header"]["msg_id"],
        "session": s.session,
    })
json.dump(out, sys.stdout)
`;

/**
 * Python side: split and verify each message with Session (it raises on a bad, missing or repeated
 * signature), print what it decoded or the error.
 */
const PY_VERIFY = `
import base64, json, sys
from jupyter_client.session import Session

req = json.load(sys.stdin)
s = Session(key=req["key"].encode(), signature_scheme="hmac-sha256")
out = []
for frames_b64 in req["messages"]:
    frames = [base64.b64decode(f) for f in frames_b64]
    try:
        idents, msg_list = s.feed_identities(frames, copy=True)
        msg = s.deserialize(msg_list, content=True, copy=True)
    except Exception as e:
        out.append({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
        continue
    out.append({
        "ok": True,
        "identities": [base64.b64encode(i).decode() for i in idents],
        "msg_id": msg["header"]["msg_id"],
        "msg_type": msg["header"]["msg_type"],
        "session": msg["header"]["session"],
        "parent_msg_id": msg["parent_header"].get("msg_id"),
        "metadata": msg["metadata"],
        "content": msg["content"],
        "buffers": [base64.b64encode(bytes(b)).decode() for b in msg["buffers"]],
    })
json.dump(out, sys.stdout, default=str)
`;

interface PySigned {
  frames: string[];
  msg_id: string;
  session: string;
}

type PyVerified =
  | {
      ok: true;
      identities: string[];
      msg_id: string;
      msg_type: string;
      session: string;
      parent_msg_id: string | null;
      metadata: Record<string, unknown>;
      content: Record<string, unknown>;
      buffers: string[];
    }
  | { ok: false; error: string };

const b64 = (b: Buffer): string => b.toString('base64');
const unb64 = (s: string): Buffer => Buffer.from(s, 'base64');

async function pySign(key: string, messages: Record<string, unknown>[]): Promise<PySigned[]> {
  return (await runPythonJson('sign with Session', PY_SIGN, { key, messages })) as PySigned[];
}

async function pyVerify(key: string, messages: Buffer[][]): Promise<PyVerified[]> {
  const input = { key, messages: messages.map((frames) => frames.map(b64)) };
  return (await runPythonJson('verify with Session', PY_VERIFY, input)) as PyVerified[];
}

function expectCode(fn: () => unknown, code: ProtocolErrorCode): void {
  expect(fn).to.throw(ProtocolError).with.property('code', code);
}

describe('python cross-check: jupyter_client Session ⇄ protocol/zmq-frames', function () {
  // Each case starts one Python interpreter (about 0.3 s with jupyter_client).
  this.timeout(30_000);

  // A fresh 256-bit key, as the gateway generates for each kernel.
  const key = randomBytes(32).toString('hex');
  const signer = new Signer(key);

  before(async () => {
    await requireJupyterClient();
  });

  describe('Python signs, we verify', () => {
    it('decodes and verifies a Session-signed execute_request with identities and a buffer', async () => {
      const [signed] = await pySign(key, [
        {
          msg_type: 'execute_request',
          content: { code: 'print("héllo ✓")', silent: false, nested: { a: [1, 2.5, null] } },
          metadata: { tag: 'x' },
          identities: [b64(Buffer.from('client-1'))],
          buffers: [b64(Buffer.from([1, 2, 3]))],
        },
      ]);
      if (signed === undefined) throw new Error('Python returned no message');
      const frames = signed.frames.map(unb64);

      const { identities, raw } = decodeZmq(frames, 'shell', signer);
      expect(identities.map(String)).to.deep.equal(['client-1']);
      expect(raw.header.msg_type).to.equal('execute_request');
      expect(raw.header.msg_id).to.equal(signed.msg_id);
      expect(raw.header.session).to.equal(signed.session);
      expect(raw.header.username).to.equal('py');
      const msg = fromRaw(raw);
      expect(msg.content).to.deep.equal({
        code: 'print("héllo ✓")',
        silent: false,
        nested: { a: [1, 2.5, null] },
      });
      expect(msg.metadata).to.deep.equal({ tag: 'x' });
      expect(msg.parent_header).to.deep.equal({});
      expect(msg.buffers.map((b) => [...b])).to.deep.equal([[1, 2, 3]]);
    });

    it('keeps the parent link of a Session-built reply', async () => {
      const request = createMessage({
        msgType: 'kernel_info_request',
        channel: 'shell',
        session: 'client',
        content: {},
      });
      const [signed] = await pySign(key, [
        { msg_type: 'kernel_info_reply', content: { status: 'ok' }, parent: request.header },
      ]);
      if (signed === undefined) throw new Error('Python returned no message');
      const { raw } = decodeZmq(signed.frames.map(unb64), 'shell', signer);
      expect(fromRaw(raw).parent_header).to.deep.include({
        msg_id: request.header.msg_id,
        session: 'client',
      });
    });

    it('refuses Session frames that were tampered with, or signed with another key', async () => {
      const [signed] = await pySign(key, [
        { msg_type: 'status', content: { execution_state: 'idle' } },
      ]);
      if (signed === undefined) throw new Error('Python returned no message');
      const frames = signed.frames.map(unb64);
      const tampered = [...frames];
      tampered[tampered.length - 1] = Buffer.from('{"execution_state": "busy"}');
      expectCode(() => decodeZmq(tampered, 'iopub', signer), 'BAD_SIGNATURE');
      expectCode(() => decodeZmq(frames, 'iopub', new Signer('not the key')), 'BAD_SIGNATURE');
      expect(decodeZmq(frames, 'iopub', signer).raw.header.msg_type).to.equal('status');
    });
  });

  describe('we sign, Python verifies', () => {
    function encode(msg: JupyterMessage, identities: Buffer[] = []): Buffer[] {
      return encodeZmq(toRaw(msg), signer, identities);
    }

    it('Session.deserialize accepts encodeZmq frames and reads the same message', async () => {
      const request = createMessage({
        msgType: 'x_custom_request',
        channel: 'shell',
        session: 'client-session',
        content: { code: '1+1', silent: false, text: 'é😀\u0000', list: [1, { b: true }] },
        metadata: { cellId: 'c1' },
        buffers: [Buffer.from([0, 255, 7])],
      });
      const reply = createMessage({
        msgType: 'execute_reply',
        channel: 'shell',
        session: 'kernel',
        parent: request.header,
        content: { status: 'ok', execution_count: 3 },
      });
      const results = await pyVerify(key, [
        encode(request, [Buffer.from('router-id')]),
        encode(reply),
      ]);
      expect(results).to.have.length(2);
      const [r1, r2] = results;
      expect(r1).to.deep.equal({
        ok: true,
        identities: [b64(Buffer.from('router-id'))],
        msg_id: request.header.msg_id,
        msg_type: 'x_custom_request',
        session: 'client-session',
        parent_msg_id: null,
        metadata: { cellId: 'c1' },
        content: request.content,
        buffers: [b64(Buffer.from([0, 255, 7]))],
      });
      expect(r2).to.include({
        ok: true,
        msg_type: 'execute_reply',
        parent_msg_id: request.header.msg_id,
      });
    });

    it('accepts client bytes forwarded from v1 and legacy frames and re-signed', async () => {
      const msg = createMessage({
        msgType: 'comm_msg',
        channel: 'shell',
        session: 'lab',
        content: { comm_id: 'w1', data: { value: 42 } },
        buffers: [Buffer.from('blob')],
      });
      // The gateway's two client→kernel paths: v1 keeps the client's JSON bytes; legacy re-serialises.
      const viaV1 = decodeV1(encodeV1(toRaw(msg)));
      const legacy = encodeLegacy(msg);
      const viaLegacy = toRaw(decodeLegacy(legacy.data, legacy.binary));
      // Both paths yield the same bytes, hence the same signature: one Session would refuse the
      // second as a duplicate, so each goes to its own.
      expect(viaLegacy.content).to.deep.equal(viaV1.content);
      const results = [
        ...(await pyVerify(key, [encodeZmq(viaV1, signer)])),
        ...(await pyVerify(key, [encodeZmq(viaLegacy, signer)])),
      ];
      expect(results).to.have.length(2);
      for (const r of results) {
        expect(r).to.include({ ok: true, msg_type: 'comm_msg', msg_id: msg.header.msg_id });
        if (r.ok) {
          expect(r.content).to.deep.equal({ comm_id: 'w1', data: { value: 42 } });
          expect(r.buffers).to.deep.equal([b64(Buffer.from('blob'))]);
        }
      }
    });

    it('accepts generated messages of every shape (property sample)', async () => {
      const messages = fc.sample(messageArb, { numRuns: 40, seed: 20240101 });
      const results = await pyVerify(
        key,
        messages.map((m) => encode(m)),
      );
      expect(results).to.have.length(messages.length);
      results.forEach((r, i) => {
        const msg = messages[i];
        if (msg === undefined) throw new Error(`no message ${i}`);
        expect(r, `message ${i}`).to.include({ ok: true, msg_id: msg.header.msg_id });
        if (!r.ok) return;
        const expected = normalise(msg) as { content: unknown; metadata: unknown };
        expect(r.msg_type).to.equal(msg.header.msg_type);
        expect(r.content).to.deep.equal(expected.content);
        expect(r.metadata).to.deep.equal(expected.metadata);
        expect(r.buffers).to.deep.equal(msg.buffers.map(b64));
      });
    });

    it('Python refuses a tampered, an unsigned, a foreign-key and a replayed message', async () => {
      const msg = createMessage({
        msgType: 'execute_request',
        channel: 'shell',
        session: 'client',
        content: { code: 'safe()' },
      });
      const good = encode(msg);

      const tampered = [...good];
      tampered[tampered.length - 1] = Buffer.from('{"code":"evil()"}');
      const unsigned = [...good];
      unsigned[1] = Buffer.alloc(0);
      const foreign = encodeZmq(toRaw(msg), new Signer('some other key'));

      // One Session sees them all, the good one first: jupyter_client records a signature before
      // checking it, so a tampered copy (same signature) seen first would burn the good one.
      const results = await pyVerify(key, [good, good, unsigned, foreign]);
      const outcomes = results.map((r) => (r.ok ? 'ok' : r.error));
      expect(outcomes[0]).to.equal('ok');
      expect(outcomes[1]).to.match(/Duplicate Signature/);
      expect(outcomes[2]).to.match(/Unsigned Message/);
      expect(outcomes[3]).to.match(/Invalid Signature/);
      // A fresh Session refuses the tampered copy on its signature alone.
      const fresh = await pyVerify(key, [tampered]);
      expect(fresh).to.have.length(1);
      expect(fresh[0]).to.have.property('ok', false);
      expect(fresh[0])
        .to.have.property('error')
        .that.matches(/Invalid Signature/);
      // And we agree with Python on each.
      expectCode(() => decodeZmq(tampered, 'shell', signer), 'BAD_SIGNATURE');
      expectCode(() => decodeZmq(unsigned, 'shell', signer), 'UNSIGNED');
      expectCode(() => decodeZmq(foreign, 'shell', signer), 'BAD_SIGNATURE');
    });
  });
});
