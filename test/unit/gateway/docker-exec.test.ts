/**
 * The bounded exec on a fake Docker exec (a PassThrough as the hijacked stream): demultiplexing,
 * the output cap counted on frame headers, the wall-time cap, the sink's backpressure, and the
 * kill of what is left (here by the in-sandbox killer, the host pid being unusable).
 */
import { PassThrough, Writable } from 'node:stream';
import { expect, use } from 'chai';
import chaiAsPromised from 'chai-as-promised';
import type Docker from 'dockerode';
import { execIn } from '../../../gateway/runtime/docker-exec.js';
import { GatewayError } from '../../../gateway/base/errors.js';

use(chaiAsPromised);

/** One frame of Docker's multiplexed stream. */
function frame(type: 1 | 2, payload: Buffer | string): Buffer {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(8);
  head[0] = type;
  head.writeUInt32BE(body.length, 4);
  return Buffer.concat([head, body]);
}

interface FakeExec {
  opts: { Cmd: string[]; Env: string[] };
  stream: PassThrough;
  running: boolean;
}

/** A container whose execs are PassThrough streams the test drives; killer execs end at once. */
function fakeContainer(): { container: Docker.Container; execs: FakeExec[] } {
  const execs: FakeExec[] = [];
  const container = {
    id: 'f'.repeat(64),
    exec(opts: { Cmd: string[]; Env: string[] }): Promise<unknown> {
      const fx: FakeExec = { opts, stream: new PassThrough(), running: true };
      execs.push(fx);
      const isKiller = execs.length > 1;
      return Promise.resolve({
        start: () => {
          if (isKiller) {
            // The killer: the first exec's process dies, the killer exits 0.
            const first = execs[0];
            if (first) first.running = false;
            fx.running = false;
            setImmediate(() => fx.stream.end());
          }
          return Promise.resolve(fx.stream);
        },
        inspect: () => Promise.resolve({ Running: fx.running, ExitCode: 0, Pid: 0 }),
      });
    },
  };
  return { container: container as unknown as Docker.Container, execs };
}

const spec = { user: '1000:1000', workingDir: '/workspace' };

describe('execIn (bounded)', () => {
  it('demultiplexes stdout and stderr, frames split anywhere', async () => {
    const { container, execs } = fakeContainer();
    const p = execIn(container, ['x'], undefined, spec);
    await new Promise(setImmediate);
    const bytes = Buffer.concat([frame(1, 'hello '), frame(2, 'oops'), frame(1, 'world')]);
    const s = execs[0]?.stream;
    for (let i = 0; i < bytes.length; i += 3) s?.write(bytes.subarray(i, i + 3));
    s?.end();
    const r = await p;
    expect(r.stdout.toString()).to.equal('hello world');
    expect(r.stderr.toString()).to.equal('oops');
    expect(execs[0]?.opts.Env[0]).to.match(/^AIDO_EXEC_MARK=[0-9a-f]{24}$/);
  });

  it('fails at a frame header announcing more than the cap, and kills the process', async () => {
    const { container, execs } = fakeContainer();
    const p = execIn(container, ['x'], undefined, {
      ...spec,
      limits: { maxOutputBytes: 1000, timeoutMs: 60_000 },
    });
    await new Promise(setImmediate);
    const head = Buffer.alloc(8);
    head[0] = 1;
    head.writeUInt32BE(0xffffffff, 4);
    execs[0]?.stream.write(head);
    const err = (await expect(p).to.be.rejectedWith(GatewayError)) as GatewayError;
    expect(err.code).to.equal('SANDBOX_EXEC_FAILED');
    expect(err.message).to.match(/more than 1000 bytes/);
    // The host pid was unusable (0): the killer ran, aimed at this exec's marker.
    const mark = execs[0]?.opts.Env[0]?.split('=')[1];
    expect(execs[1]?.opts.Cmd.slice(-2)).to.deep.equal(['AIDO_EXEC_MARK', mark]);
    expect(execs[0]?.running).to.equal(false);
    expect(execs[0]?.stream.destroyed).to.equal(true);
  });

  it('fails at the wall-time cap when the process never ends (stopped), and kills it', async () => {
    const { container, execs } = fakeContainer();
    const t0 = Date.now();
    const p = execIn(container, ['x'], undefined, {
      ...spec,
      limits: { maxOutputBytes: 1000, timeoutMs: 50 },
    });
    const err = (await expect(p).to.be.rejectedWith(GatewayError)) as GatewayError;
    expect(err.code).to.equal('SANDBOX_EXEC_TIMEOUT');
    expect(Date.now() - t0).to.be.below(5000);
    expect(execs).to.have.length(2);
    expect(execs[0]?.running).to.equal(false);
  });

  it('fails when output stops for the idle cap, long before the wall-time cap', async () => {
    const { container, execs } = fakeContainer();
    const p = execIn(container, ['x'], undefined, {
      ...spec,
      limits: { maxOutputBytes: 1000, timeoutMs: 60_000, idleTimeoutMs: 50 },
    });
    await new Promise(setImmediate);
    execs[0]?.stream.write(frame(1, 'some'));
    const err = (await expect(p).to.be.rejectedWith(GatewayError)) as GatewayError;
    expect(err.code).to.equal('SANDBOX_EXEC_TIMEOUT');
    expect(err.message).to.match(/no progress for 0.05 s/);
    expect(execs[0]?.running).to.equal(false);
  });

  it('honours the sink’s backpressure and fails when the sink fails', async () => {
    const { container, execs } = fakeContainer();
    const got: string[] = [];
    let release: () => void = () => undefined;
    const sink = new Writable({
      highWaterMark: 4,
      write(chunk: Buffer, _enc, done): void {
        got.push(chunk.toString());
        release = done;
      },
    });
    const p = execIn(container, ['x'], undefined, { ...spec, stdout: sink });
    await new Promise(setImmediate);
    const s = execs[0]?.stream;
    s?.write(frame(1, 'first'));
    await new Promise(setImmediate);
    expect(s?.isPaused(), 'paused while the sink is full').to.equal(true);
    release();
    await new Promise(setImmediate);
    expect(s?.isPaused(), 'resumed on drain').to.equal(false);
    sink.destroy(new Error('client gone'));
    await expect(p).to.be.rejectedWith(GatewayError, /destination/);
    expect(got).to.deep.equal(['first']);
  });
});
