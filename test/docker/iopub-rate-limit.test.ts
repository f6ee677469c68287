/** The IOPub output rate limit with a real kernel: output past the limit is dropped and the client told. */
import { expect } from 'chai';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { TestClient } from '../helpers/ws-client.js';

describe('IOPub output rate limit (real sandbox)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  let c: TestClient;
  before(async () => {
    t = await startTestGateway({ iopubMsgRateLimit: 10 });
    const k = await t.startKernel();
    c = await TestClient.connect(`${t.wsBase}/api/kernels/${k.id}/channels`, { token: t.token });
  });
  after(async () => {
    c.close();
    await t.close();
  });

  const streams = (r: Awaited<ReturnType<TestClient['execute']>>) =>
    r.iopub.filter(
      (m) => m.header.msg_type === 'stream' && !String(m.content.text).startsWith('[gateway]'),
    );

  it('drops output past the limit, says so once, and starts afresh with the next execution', async () => {
    // 200 separately flushed lines in well under the 3 s window: far more than 10/s × 3 s.
    const burst = await c.execute('import sys\nfor i in range(200):\n    print(i, flush=True)');
    expect(burst.reply.content.status).to.equal('ok');
    const notices = c.messages.filter(
      (m) =>
        m.header.msg_type === 'stream' &&
        String(m.content.text).includes('IOPub output rate exceeded'),
    );
    expect(notices).to.have.length(1);
    expect(streams(burst).length).to.be.at.most(30);
    const after = await c.execute("print('next')");
    expect(streams(after).map((m) => m.content.text)).to.deep.equal(['next\n']);
  });
});
