/**
 * The MCP server at /mcp driven by the SDK's own client over streamable HTTP, against real kernels:
 * every tool, a kernel per MCP session (started on first use, removed when the session ends),
 * kernel_id to work on a REST kernel, plots as image content, and the token.
 */
import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

use(chaiAsPromised);

type Content = CallToolResult['content'][number];

async function connect(
  t: TestGateway,
  token = t.token,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(`${t.base}/mcp`), {
    requestInit: { headers: { Authorization: `token ${token}` } },
  });
  const client = new Client({ name: 'aido-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}

async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
): Promise<{ text: string; images: Content[]; isError: boolean }> {
  const r = (await client.callTool({ name, arguments: args })) as CallToolResult;
  return {
    text: r.content
      .filter((c) => c.type === 'text')
      .map((c) => c.text)
      .join('\n'),
    images: r.content.filter((c) => c.type === 'image'),
    isError: r.isError === true,
  };
}

describe('MCP server at /mcp (docker)', function () {
  this.timeout(180_000);
  let t: TestGateway;

  before(async () => {
    t = await startTestGateway();
  });
  after(async () => {
    await t.close();
  });

  it('offers run_python, list_files, read_file, write_file and reset', async () => {
    const { client } = await connect(t);
    try {
      const { tools } = await client.listTools();
      expect(tools.map((x) => x.name).sort()).to.deep.equal([
        'list_files',
        'read_file',
        'reset',
        'run_python',
        'write_file',
      ]);
      const run = tools.find((x) => x.name === 'run_python');
      expect(run?.inputSchema.required).to.deep.equal(['code']);
      // Listing tools starts no kernel.
      expect(t.gw.kernels.list()).to.deep.equal([]);
    } finally {
      await client.close();
    }
  });

  it('runs code in the session’s own kernel, keeps state, returns plots and files, and resets', async () => {
    const { client, transport } = await connect(t);
    const r1 = await call(client, 'run_python', { code: 'x = 21 * 2\nprint("x is", x)' });
    expect(r1.isError).to.equal(false);
    expect(r1.text).to.match(/^status: ok \(execution 1\)/);
    expect(r1.text).to.include('x is 42');
    const kernels = t.gw.kernels.list();
    expect(kernels).to.have.length(1);
    const sessionKernel = kernels[0]?.id;

    const r2 = await call(client, 'run_python', { code: 'x + 1' });
    expect(r2.text).to.include('Out[2]: 43');

    const plot = await call(client, 'run_python', {
      code: "import matplotlib.pyplot as plt\nplt.plot([3, 1, 2]); plt.savefig('plot.png'); plt.show()",
    });
    expect(plot.isError).to.equal(false);
    expect(plot.images).to.have.length(1);
    const img = plot.images[0] as { type: 'image'; data: string; mimeType: string };
    expect(img.mimeType).to.equal('image/png');
    expect(Buffer.from(img.data, 'base64').subarray(1, 4).toString()).to.equal('PNG');
    expect(plot.text).to.include('plot.png');

    const err = await call(client, 'run_python', { code: '1 / 0' });
    expect(err.isError).to.equal(true);
    expect(err.text).to.include('ZeroDivisionError: division by zero');
    expect(err.text).to.not.include('\u001b[');

    const w = await call(client, 'write_file', { path: 'data/in.csv', content: 'a,b\n1,2\n' });
    expect(w.isError).to.equal(false);
    expect(w.text).to.equal('wrote /workspace/data/in.csv (8 bytes)');
    const pandas = await call(client, 'run_python', {
      code: "import pandas as pd\nprint(pd.read_csv('data/in.csv').b.sum())",
    });
    expect(pandas.text).to.include('\n2');

    const bytes = Buffer.from([0, 1, 2, 255, 254]);
    const wb = await call(client, 'write_file', {
      path: 'raw.bin',
      content: bytes.toString('base64'),
      encoding: 'base64',
    });
    expect(wb.isError).to.equal(false);
    const rb = await call(client, 'read_file', { path: 'raw.bin' });
    expect(rb.text).to.equal(
      `raw.bin: 5 bytes, application/octet-stream, base64:\n${bytes.toString('base64')}`,
    );
    const rt = await call(client, 'read_file', { path: 'data/in.csv' });
    expect(rt.text).to.equal('a,b\n1,2\n');
    const rp = await call(client, 'read_file', { path: 'plot.png' });
    expect(rp.images).to.have.length(1);

    const ls = await call(client, 'list_files', {});
    const listing = JSON.parse(ls.text) as { entries: { name: string; type: string }[] };
    expect(listing.entries.map((e) => e.name)).to.include.members(['data', 'plot.png', 'raw.bin']);
    const lsData = await call(client, 'list_files', { path: 'data' });
    expect(lsData.text).to.include('in.csv');

    const outside = await call(client, 'read_file', { path: '../etc/passwd' });
    expect(outside.isError).to.equal(true);
    expect(outside.text).to.match(/^BAD_PATH/);

    const reset = await call(client, 'reset', {});
    expect(reset.text).to.include('restarted on a fresh sandbox');
    const after = await call(client, 'run_python', { code: 'x' });
    expect(after.isError).to.equal(true);
    expect(after.text).to.include('NameError');
    const emptied = JSON.parse((await call(client, 'list_files', {})).text) as {
      entries: unknown[];
    };
    expect(emptied.entries).to.deep.equal([]);
    expect(t.gw.kernels.list().map((k) => k.id)).to.deep.equal([sessionKernel]);

    // Ending the MCP session removes its kernel and sandbox.
    await transport.terminateSession();
    await client.close();
    expect(t.gw.kernels.list()).to.deep.equal([]);
    expect(await t.gw.runtime.list()).to.deep.equal([]);
  });

  it('works on a REST kernel with kernel_id, and leaves that kernel alone at the end', async () => {
    const { id } = await t.startKernel();
    const res = await t.api(`/api/kernels/${id}/execute`, {
      method: 'POST',
      body: JSON.stringify({ code: 'shared = "from REST"' }),
    });
    expect(res.status).to.equal(200);
    const { client, transport } = await connect(t);
    const r = await call(client, 'run_python', { code: 'print(shared)', kernel_id: id });
    expect(r.text).to.include('from REST');
    const missing = await call(client, 'run_python', {
      code: '1',
      kernel_id: '00000000-0000-0000-0000-000000000000',
    });
    expect(missing.isError).to.equal(true);
    expect(missing.text).to.match(/^KERNEL_NOT_FOUND/);
    await transport.terminateSession();
    await client.close();
    expect(t.gw.kernels.list().map((k) => k.id)).to.deep.equal([id]);
    const del = await t.api(`/api/kernels/${id}`, { method: 'DELETE' });
    expect(del.status).to.equal(204);
  });

  it('requires the token', async () => {
    await expect(connect(t, 'wrong-token')).to.be.rejectedWith(/401|Unauthorized/);
    const res = await fetch(`${t.base}/mcp`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(res.status).to.equal(401);
  });

  it('answers an unknown session with 404 and a request without one with 400', async () => {
    const unknown = await t.api('/mcp', {
      method: 'POST',
      headers: { Accept: 'application/json, text/event-stream', 'Mcp-Session-Id': 'nope' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(unknown.status).to.equal(404);
    const none = await t.api('/mcp', {
      method: 'POST',
      headers: { Accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(none.status).to.equal(400);
  });
});

describe('MCP sessions: idle timeout (docker)', function () {
  this.timeout(180_000);
  let t: TestGateway;

  before(async () => {
    t = await startTestGateway({ mcpIdleTimeoutS: 1 });
  });
  after(async () => {
    await t.close();
  });

  it('closes an idle session and removes its kernel; the session id is then unknown', async () => {
    const { client, transport } = await connect(t);
    const r = await call(client, 'run_python', { code: '1 + 1' });
    expect(r.text).to.include('Out[1]: 2');
    expect(t.gw.kernels.list()).to.have.length(1);
    const deadline = Date.now() + 20_000;
    while (t.gw.kernels.list().length > 0) {
      if (Date.now() > deadline)
        throw new Error('timed out waiting for the idle session’s kernel to go');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const res = await t.api('/mcp', {
      method: 'POST',
      headers: {
        Accept: 'application/json, text/event-stream',
        'Mcp-Session-Id': transport.sessionId ?? '',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    expect(res.status).to.equal(404);
    await client.close();
  });
});
