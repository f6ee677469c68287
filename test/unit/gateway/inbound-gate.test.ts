/** The inbound gate: refused messages are counted, reported, and past the limit end the kernel. */
import { expect } from 'chai';
import { InboundGate, type InboundLimits } from '../../../gateway/channels/inbound-gate.js';
import { createMessage, encodeZmq, Signer, toRaw } from '../../../protocol/index.js';

const LIMITS: InboundLimits = {
  maxMessageBytes: 1024 ** 2,
  receiveHighWaterMark: 10,
  maxFrames: 16,
  maxHeaderBytes: 4096,
  maxMetadataBytes: 4096,
  abuseLimit: 3,
};

const signer = new Signer('k');

function message(parentPad = 0): Buffer[] {
  const raw = toRaw(
    createMessage({
      msgType: 'stream',
      channel: 'iopub',
      session: 's',
      content: { name: 'stdout', text: 'x' },
    }),
  );
  if (parentPad > 0) raw.parentHeader = Buffer.from(JSON.stringify({ pad: 'p'.repeat(parentPad) }));
  return [Buffer.from('topic'), ...encodeZmq(raw, signer)];
}

function gate(limits = LIMITS) {
  const warnings: Record<string, unknown>[] = [];
  const codes: string[] = [];
  const abuse: string[] = [];
  const g = new InboundGate(limits, {
    warn: (fields) => warnings.push(fields),
    metrics: {
      protocolViolation: (code: string) => codes.push(code),
    } as unknown as NonNullable<ConstructorParameters<typeof InboundGate>[1]['metrics']>,
    onAbuse: (detail) => abuse.push(detail),
  });
  return { g, warnings, codes, abuse };
}

describe('InboundGate', () => {
  it('passes a valid message and counts nothing', () => {
    const { g, warnings } = gate();
    expect(g.decode(message(), 'iopub', signer)?.header.msg_type).to.equal('stream');
    expect(g.violations).to.equal(0);
    expect(warnings).to.deep.equal([]);
  });

  it('refuses an oversized parent header, a forged signature, too many frames; kills once at the limit', () => {
    const { g, codes, abuse } = gate();
    expect(g.decode(message(5000), 'iopub', signer)).to.equal(undefined);
    const forged = message();
    forged[2] = Buffer.from('0'.repeat(64));
    expect(g.decode(forged, 'iopub', signer)).to.equal(undefined);
    expect(abuse).to.deep.equal([]);
    expect(
      g.decode(
        [...message(), ...Array.from({ length: 20 }, () => Buffer.alloc(1))],
        'iopub',
        signer,
      ),
    ).to.equal(undefined);
    expect(codes).to.deep.equal(['FRAME_TOO_LARGE', 'BAD_SIGNATURE', 'FRAME_TOO_LARGE']);
    expect(abuse).to.have.length(1);
    expect(abuse[0]).to.match(/^3 protocol violations \(last: FRAME_TOO_LARGE/);
    g.violation('PEER_DISCONNECTED', 'dropped');
    expect(abuse, 'reported once per sandbox').to.have.length(1);
    expect(g.report()).to.include({ violations: 4, violations_total: 4 });
    g.reset();
    expect(g.report()).to.include({ violations: 0, violations_total: 4 });
  });

  it('only reports when the abuse limit is 0', () => {
    const { g, abuse } = gate({ ...LIMITS, abuseLimit: 0 });
    for (let i = 0; i < 100; i++) g.decode(message(5000), 'iopub', signer);
    expect(g.violations).to.equal(100);
    expect(abuse).to.deep.equal([]);
  });
});
