/** The agent execution's pure parts: output collection, images, ANSI stripping, request parsing. */
import { expect } from 'chai';
import { parseExecuteBody } from '../../../gateway/http/agent-api.js';
import {
  fileUrl,
  imagesOf,
  OutputCollector,
  stripAnsi,
  type AgentOutput,
  type ExecutionDocument,
} from '../../../gateway/agent/agent-execution.js';
import { GatewayError } from '../../../gateway/base/errors.js';
import { toolResultOf } from '../../../gateway/agent/tool-result.js';

describe('OutputCollector', () => {
  it('counts what an update_display_data replaces against the limit, for every output it updates', () => {
    const c = new OutputCollector(10_000);
    for (let i = 0; i < 50; i++)
      c.add('display_data', { data: { 'text/plain': 'x' }, transient: { display_id: 'd' } });
    const big = { data: { 'text/plain': 'y'.repeat(1000) }, transient: { display_id: 'd' } };
    expect(c.add('update_display_data', big), 'an update 50 × 1 kB over a 10 kB limit').to.equal(
      undefined,
    );
    expect(c.truncated).to.equal(true);
    expect(c.outputs.every((o) => o.output_type === 'display_data' && o.data['text/plain'] === 'x'))
      .to.be.true;
    const small = { data: { 'text/plain': 'z' }, transient: { display_id: 'd' } };
    expect(c.add('update_display_data', small)?.event).to.equal('update_display_data');
  });

  it('merges consecutive stream text per name and keeps the order of everything else', () => {
    const c = new OutputCollector(1024 ** 2);
    c.add('stream', { name: 'stdout', text: 'a\n' });
    c.add('stream', { name: 'stdout', text: 'b\n' });
    c.add('stream', { name: 'stderr', text: 'w\n' });
    c.add('stream', { name: 'stdout', text: 'c\n' });
    c.add('display_data', { data: { 'text/plain': 'd' }, metadata: {}, transient: {} });
    c.add('stream', { name: 'stdout', text: 'e\n' });
    c.add('execute_result', { execution_count: 3, data: { 'text/plain': '1' }, metadata: {} });
    expect(c.outputs).to.deep.equal([
      { output_type: 'stream', name: 'stdout', text: 'a\nb\n' },
      { output_type: 'stream', name: 'stderr', text: 'w\n' },
      { output_type: 'stream', name: 'stdout', text: 'c\n' },
      { output_type: 'display_data', data: { 'text/plain': 'd' }, metadata: {} },
      { output_type: 'stream', name: 'stdout', text: 'e\n' },
      {
        output_type: 'execute_result',
        execution_count: 3,
        data: { 'text/plain': '1' },
        metadata: {},
      },
    ]);
  });

  it('reports each chunk as its own event while the document holds the merged text', () => {
    const c = new OutputCollector(1024 ** 2);
    const first = c.add('stream', { name: 'stdout', text: '1\n' });
    const second = c.add('stream', { name: 'stdout', text: '2\n' });
    expect(first).to.deep.equal({
      event: 'stream',
      data: { output_type: 'stream', name: 'stdout', text: '1\n' },
    });
    expect(second?.data).to.deep.equal({ output_type: 'stream', name: 'stdout', text: '2\n' });
    expect(c.outputs).to.deep.equal([{ output_type: 'stream', name: 'stdout', text: '1\n2\n' }]);
  });

  it('gives errors a traceback_text without ANSI colour codes', () => {
    const c = new OutputCollector(1024 ** 2);
    c.add('error', {
      ename: 'ValueError',
      evalue: 'bad',
      traceback: ['\u001b[0;31mValueError\u001b[0m  Traceback', '\u001b[1;32m----> 1\u001b[0m x'],
    });
    expect(c.outputs[0]).to.deep.equal({
      output_type: 'error',
      ename: 'ValueError',
      evalue: 'bad',
      traceback: ['\u001b[0;31mValueError\u001b[0m  Traceback', '\u001b[1;32m----> 1\u001b[0m x'],
      traceback_text: 'ValueError  Traceback\n----> 1 x',
    });
  });

  it('applies clear_output (at once, or before the next output with wait) and display updates', () => {
    const c = new OutputCollector(1024 ** 2);
    c.add('stream', { name: 'stdout', text: 'gone' });
    expect(c.add('clear_output', { wait: false })).to.deep.equal({
      event: 'clear_output',
      data: { wait: false },
    });
    expect(c.outputs).to.deep.equal([]);
    c.add('display_data', {
      data: { 'text/plain': 'v1' },
      metadata: {},
      transient: { display_id: 'p' },
    });
    c.add('clear_output', { wait: true });
    expect(c.outputs).to.have.length(1);
    c.add('display_data', {
      data: { 'text/plain': 'v2' },
      metadata: {},
      transient: { display_id: 'p' },
    });
    c.add('update_display_data', {
      data: { 'text/plain': 'v3' },
      metadata: { m: 1 },
      transient: { display_id: 'p' },
    });
    expect(c.outputs).to.deep.equal([
      {
        output_type: 'display_data',
        data: { 'text/plain': 'v3' },
        metadata: { m: 1 },
        display_id: 'p',
      },
    ]);
  });

  it('drops output past its byte cap, says so, and ignores message types that are not output', () => {
    const c = new OutputCollector(10);
    expect(c.add('stream', { name: 'stdout', text: '12345' })).to.not.equal(undefined);
    expect(c.add('stream', { name: 'stdout', text: '678901' })).to.equal(undefined);
    expect(c.add('stream', { name: 'stdout', text: '1' })).to.equal(undefined);
    expect(c.truncated).to.equal(true);
    expect(c.outputs).to.deep.equal([{ output_type: 'stream', name: 'stdout', text: '12345' }]);
    expect(c.add('comm_msg', { data: {} })).to.equal(undefined);
  });
});

describe('imagesOf', () => {
  it('collects PNG (whitespace removed) and SVG payloads with their output index', () => {
    const outputs: AgentOutput[] = [
      { output_type: 'stream', name: 'stdout', text: 'x' },
      { output_type: 'display_data', data: { 'image/png': 'iVBO\nRw0K\n' }, metadata: {} },
      {
        output_type: 'execute_result',
        execution_count: 1,
        data: { 'image/svg+xml': '<svg/>', 'text/plain': 's' },
        metadata: {},
      },
    ];
    expect(imagesOf(outputs)).to.deep.equal([
      { mime_type: 'image/png', data: 'iVBORw0K', output_index: 1 },
      { mime_type: 'image/svg+xml', data: '<svg/>', output_index: 2 },
    ]);
  });
});

describe('stripAnsi and fileUrl', () => {
  it('removes CSI sequences and keeps the text', () => {
    expect(stripAnsi('\u001b[38;5;241m.\u001b[39mplot\u001b[0m')).to.equal('.plot');
  });

  it('percent-encodes each path segment of a download URL', () => {
    expect(fileUrl('k', 'a b/c#d.csv')).to.equal('/api/kernels/k/files/a%20b/c%23d.csv');
  });
});

describe('parseExecuteBody', () => {
  const config = { execTimeoutS: 30, envAllowlist: ['OK'] };

  it('takes code, timeout_s (in ms) and allow-listed env', () => {
    expect(
      parseExecuteBody({ code: 'x', timeout_s: 2.5, env: { OK: '1', PATH: '/x' } }, config),
    ).to.deep.equal({
      code: 'x',
      timeoutMs: 2500,
      env: { OK: '1' },
      rawEnv: { OK: '1', PATH: '/x' },
    });
  });

  it('refuses a timeout_s above the execution limit, unknown fields, bad types', () => {
    for (const body of [
      { code: 'x', timeout_s: 30.5 },
      { code: 'x', timeout_s: 0 },
      { code: 'x', timeout_s: '5' },
      { code: 'x', extra: 1 },
      { code: 5 },
      {},
      null,
      [],
      { code: 'x', env: { OK: 1 } },
      { code: 'x', env: 'OK=1' },
    ]) {
      expect(() => parseExecuteBody(body, config), JSON.stringify(body))
        .to.throw(GatewayError)
        .with.property('code', 'BAD_REQUEST');
    }
  });

  it('allows any positive timeout_s when the execution limit is off', () => {
    expect(parseExecuteBody({ code: 'x', timeout_s: 3600 }, { ...config, execTimeoutS: 0 }))
      .to.have.property('timeoutMs')
      .that.equals(3_600_000);
  });
});

describe('toolResultOf (MCP run_python)', () => {
  it('renders outputs as text, lists files, adds PNGs as images, and flags errors', () => {
    const doc: ExecutionDocument = {
      status: 'error',
      execution_count: 4,
      outputs: [
        { output_type: 'stream', name: 'stdout', text: 'hi\n' },
        {
          output_type: 'display_data',
          data: { 'image/png': 'AAAA', 'text/plain': 'Fig' },
          metadata: {},
        },
        {
          output_type: 'error',
          ename: 'E',
          evalue: 'v',
          traceback: ['\u001b[0;31mE\u001b[0m: v'],
          traceback_text: 'E: v',
        },
      ],
      error: { ename: 'E', evalue: 'v' },
      artifacts: [{ path: 'a.csv', size: 3, mime_type: 'text/csv', change: 'created', url: '/u' }],
      images: [{ mime_type: 'image/png', data: 'AAAA', output_index: 1 }],
      duration_ms: 12,
    };
    const r = toolResultOf(doc);
    expect(r.isError).to.equal(true);
    expect(r.content).to.deep.equal([
      {
        type: 'text',
        text: [
          'status: error (execution 4), 12 ms',
          'hi',
          'Fig (display: image/png)',
          'E: v',
          'files created or changed in /workspace:',
          '  a.csv (3 bytes, text/csv)',
        ].join('\n'),
      },
      { type: 'image', data: 'AAAA', mimeType: 'image/png' },
    ]);
  });
});
