/**
 * The chat parts that need no kernel: its configuration rows and their checks, the conversation
 * store's caps, TTL and rollback, the clipping of tool results, and the system prompt.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { ConversationStore, type Conversation } from '../../../gateway/agent/chat-conversations.js';
import { clipMiddle, systemPrompt } from '../../../gateway/agent/chat-loop.js';
import { boundedFetch } from '../../../gateway/agent/chat-model.js';
import { ConfigError, loadConfig } from '../../../gateway/base/config.js';
import { GatewayError } from '../../../gateway/base/errors.js';
import { createLogger } from '../../../gateway/base/logger.js';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env, []);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('chat configuration', () => {
  it('is off by default, with the documented limits', () => {
    const c = loadConfig({}, []);
    expect(c.llmBaseUrl).to.equal('');
    expect(c.llmApiKeyFile).to.equal('');
    expect(c.llmMaxSteps).to.equal(8);
    expect(c.llmTimeoutS).to.equal(120);
    expect(c.llmImages).to.equal(false);
    expect(c.chatTtlS).to.equal(1800);
    expect(c.maxChats).to.equal(64);
    expect(c.chatMaxBytes).to.equal(8 * 1024 ** 2);
  });

  it('needs a model with a base URL, an http(s) URL without credentials, and a readable key file', () => {
    expect(problemsOf({ AIDO_LLM_BASE_URL: 'http://127.0.0.1:11434/v1' }).join('\n')).to.match(
      /AIDO_LLM_MODEL .*required/,
    );
    expect(
      problemsOf({ AIDO_LLM_BASE_URL: 'ftp://127.0.0.1/v1', AIDO_LLM_MODEL: 'm' }).join('\n'),
    ).to.match(/AIDO_LLM_BASE_URL .*http\(s\) URL/);
    const withCredentials = problemsOf({
      AIDO_LLM_BASE_URL: 'https://user:sk-secret@api.example/v1',
      AIDO_LLM_MODEL: 'm',
    }).join('\n');
    expect(withCredentials).to.match(/credentials do not belong in the URL/);
    expect(withCredentials, 'the refusal does not repeat the secret').not.to.include('sk-secret');
    expect(problemsOf({ AIDO_LLM_API_KEY_FILE: '/nonexistent/aido-key' }).join('\n')).to.match(
      /AIDO_LLM_API_KEY_FILE .*cannot read \/nonexistent\/aido-key \(ENOENT\)/,
    );

    const dir = mkdtempSync('/tmp/aido-key-');
    try {
      writeFileSync(`${dir}/key`, 'sk-x\n');
      chmodSync(`${dir}/key`, 0o600);
      const c = loadConfig(
        {
          AIDO_LLM_BASE_URL: 'http://127.0.0.1:8000/v1/',
          AIDO_LLM_MODEL: 'qwen',
          AIDO_LLM_API_KEY_FILE: `${dir}/key`,
        },
        [],
      );
      expect(c.llmBaseUrl, 'trailing slash dropped').to.equal('http://127.0.0.1:8000/v1');
      expect(c.llmApiKeyFile).to.equal(`${dir}/key`);
      expect(JSON.stringify(c), 'the config holds the path, never the key').not.to.include('sk-x');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('chat conversations', () => {
  const logger = createLogger('silent');
  let now = 1_000_000;
  const released: string[] = [];
  const store = (maxConversations = 2, maxBytes = 10_000): ConversationStore =>
    new ConversationStore({
      ttlMs: 60_000,
      maxConversations,
      maxBytes,
      logger,
      now: () => now,
      release: (c: Conversation, reason: string) => {
        released.push(`${c.id}:${c.ownsKernel ? 'own' : 'caller'}:${reason}`);
        return Promise.resolve();
      },
    });

  afterEach(() => {
    released.length = 0;
  });

  it('refuses a conversation past the cap, and a second turn while one runs', async () => {
    const s = store(2);
    const a = s.create(undefined);
    s.create('caller-kernel');
    expect(() => s.create(undefined))
      .to.throw(GatewayError, /AIDO_MAX_CHATS/)
      .with.property('code', 'TOO_MANY_CONVERSATIONS');
    s.begin(a);
    expect(() => s.begin(a))
      .to.throw(GatewayError)
      .with.property('code', 'CONVERSATION_BUSY');
    s.end(a);
    expect(s.begin(a).signal.aborted).to.equal(false);
    await s.close();
  });

  it('counts bytes, rolls a turn back, and refuses a new turn past AIDO_CHAT_MAX_BYTES', async () => {
    const s = store(2, 1000);
    const c = s.create(undefined);
    const mark = c.mark();
    c.push({ role: 'user', content: 'x'.repeat(600) });
    const afterOne = c.bytes;
    expect(afterOne).to.be.above(600);
    c.push({ role: 'assistant', content: 'y'.repeat(600) });
    expect(() => s.begin(c))
      .to.throw(GatewayError, /AIDO_CHAT_MAX_BYTES/)
      .with.property('code', 'CONVERSATION_TOO_LARGE');
    c.rollback(mark);
    expect(c.bytes).to.equal(0);
    expect(c.messages).to.deep.equal([]);
    await s.close();
  });

  it('drops idle conversations after the TTL (not busy ones), releasing what they hold', async () => {
    const s = store(3);
    const idle = s.create(undefined);
    const busy = s.create(undefined);
    const callers = s.create('caller-kernel');
    s.begin(busy);
    now += 61_000;
    s.sweep();
    await new Promise((r) => setImmediate(r));
    expect(released.sort()).to.deep.equal(
      [`${idle.id}:own:expired`, `${callers.id}:caller:expired`].sort(),
    );
    expect(s.has(busy.id)).to.equal(true);
    expect(() => s.get(idle.id))
      .to.throw(GatewayError)
      .with.property('code', 'CONVERSATION_NOT_FOUND');
    // Deleting a running conversation stops its turn.
    const turn = busy.turn;
    await s.delete(busy.id);
    expect(turn?.signal.aborted).to.equal(true);
    await s.close();
  });
});

describe('chat tool results and prompt', () => {
  it('clips the middle of a long result, keeping its head and tail, with a note', () => {
    expect(clipMiddle('short', 100)).to.equal('short');
    const long = `HEAD${'.'.repeat(10_000)}TAIL`;
    const clipped = clipMiddle(long, 1000);
    expect(clipped.startsWith('HEAD')).to.equal(true);
    expect(clipped.endsWith('TAIL')).to.equal(true);
    expect(clipped).to.match(/\[9008 characters cut: .*AIDO_LLM_TOOL_RESULT_MAX \(1000\)\]/);
    expect(clipped.length).to.be.below(1200);
  });

  it('tells the model its sandbox as configured', () => {
    const c = loadConfig({ AIDO_EXEC_TIMEOUT: '12', AIDO_LLM_IMAGES: 'true' }, []);
    const prompt = systemPrompt(c);
    expect(prompt).to.include('interrupted after 12 s').and.include('512 MB');
    expect(prompt).to.include('/workspace').and.include('No network');
    expect(prompt).to.include('and so do you');
    expect(systemPrompt(loadConfig({}, []))).to.include('you get a note, not the image');
  });

  it('tells the model what its network reaches: the egress allow-list, or nothing', () => {
    const open = systemPrompt(loadConfig({ AIDO_EGRESS_ALLOW: 'pypi,mirror.example:8080' }, []));
    expect(open).to.include('%pip install').and.include('pypi, mirror.example:8080');
    expect(open).not.to.include('no other packages can be installed');
    const closed = systemPrompt(loadConfig({ AIDO_EGRESS_ALLOW: '' }, []));
    expect(closed).to.include('No network access: nothing can be downloaded');
    expect(closed).not.to.include('%pip');
  });
});

describe('boundedFetch (the model server is outside the gateway)', () => {
  async function serve(bytes: number): Promise<{ url: string; close: () => void }> {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(Buffer.alloc(bytes, 0x20));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/`, close: () => server.close() };
  }

  it('reads an answer up to the cap, and fails one over it instead of buffering it', async () => {
    const small = await serve(1000);
    const big = await serve(200_000);
    try {
      const f = boundedFetch(100_000);
      expect((await (await f(small.url)).arrayBuffer()).byteLength).to.equal(1000);
      let err: unknown;
      await (await f(big.url)).arrayBuffer().catch((e: unknown) => (err = e));
      expect(String(err)).to.match(/over 100000 bytes/);
    } finally {
      small.close();
      big.close();
    }
  });
});
