/**
 * The security console in a real headless Chromium (Debian's, driven by playwright-core) against a
 * real gateway with real kernels: sign-in (a wrong token shows an error and nothing else), kernels
 * appearing, a busy loop turning a kernel busy, interrupt and kill from the page (kill by keyboard),
 * an OOM death with its reason, panic with its confirmation and count, a kernel started through
 * the API appearing, a narrow screen. Throughout: the page's HTML holds no data, every answer
 * carries the CSP, and the page sends no request anywhere but the gateway.
 *
 * Screenshots go to test-artifacts/console/; with AIDO_UPDATE_SCREENSHOTS=1 the OOM step also
 * writes docs/console.png, the README's picture.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { expect } from 'chai';
import type { Locator, Page } from 'playwright-core';
import { launchChromium, type TestBrowser } from '../helpers/browser.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { waitUntil } from '../helpers/wait.js';
import { TestClient } from '../helpers/ws-client.js';

const ARTIFACTS = 'test-artifacts/console';
const MiB = 1024 ** 2;
/** The page polls this fast here (2 s by default). */
const POLL_MS = 400;

interface Death {
  kernel_id: string;
  cause: string;
  reason: string;
  at: string;
}

describe('security console (real Chromium, real kernels)', function () {
  this.timeout(120_000);
  let t: TestGateway;
  let browser: TestBrowser;
  let page: Page;
  let a: string;
  let b: string;
  const requests: string[] = [];
  const cspErrors: string[] = [];
  const clients: TestClient[] = [];

  const row = (kernelId: string): Locator =>
    page.locator(`#sandboxes tr[data-kernel-id="${kernelId}"]`);
  const stateOf = (kernelId: string): Locator =>
    row(kernelId).locator('td').nth(3).locator('.badge');

  async function textBecomes(
    l: Locator,
    re: RegExp,
    what: string,
    timeoutMs = 30_000,
  ): Promise<string> {
    let last = '';
    await waitUntil(
      async () => {
        last = (await l.count()) > 0 ? ((await l.first().textContent()) ?? '') : '';
        return re.test(last);
      },
      `${what} (last seen: "${last}")`,
      timeoutMs,
    );
    return last;
  }

  async function gone(l: Locator, what: string): Promise<void> {
    await waitUntil(async () => (await l.count()) === 0, what, 30_000);
  }

  async function shot(name: string): Promise<void> {
    await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
  }

  async function deaths(): Promise<Death[]> {
    const res = await t.api('/api/security/events');
    expect(res.status).to.equal(200);
    return ((await res.json()) as { deaths: Death[] }).deaths;
  }

  before(async function () {
    this.timeout(180_000);
    mkdirSync(ARTIFACTS, { recursive: true });
    // The page's scripts as this checkout has them (npm run build does the same).
    execFileSync('npx', ['tsc', '-p', 'console/tsconfig.json'], { stdio: 'inherit' });
    // A small memory limit, so the OOM step fills it in a moment.
    t = await startTestGateway({
      memoryBytes: 128 * MiB,
      tmpSizeBytes: 16 * MiB,
      workspaceSizeBytes: 16 * MiB,
      // /pkgs (egress is on by default) is memory-backed too: it must fit beside the others.
      pipSizeBytes: 16 * MiB,
    });
    [a, b] = (await Promise.all([t.startKernel(), t.startKernel()])).map((k) => k.id) as [
      string,
      string,
    ];
    browser = await launchChromium({ locale: 'en-GB', timezoneId: 'UTC' });
    browser.context.on('request', (r) => {
      requests.push(r.url());
    });
    page = await browser.context.newPage();
    page.on('console', (m) => {
      if (/content security policy/i.test(m.text())) cspErrors.push(m.text());
    });
  });

  after(async () => {
    for (const c of clients) c.close();
    // The gateway (and its sandboxes) goes even when the browser never started.
    try {
      await (browser as TestBrowser | undefined)?.close();
    } finally {
      await t.close();
    }
  });

  it('serves HTML that holds no data, with a strict CSP, no-sniff and no framing', async () => {
    const res = await fetch(`${t.base}/console/`);
    expect(res.status).to.equal(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).to.include("script-src 'self'");
    expect(csp).to.include("frame-ancestors 'none'");
    expect(csp).to.include("connect-src 'self'");
    expect(csp).not.to.include('unsafe-inline');
    expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
    const html = await res.text();
    for (const secret of [a, b, t.token]) expect(html).not.to.include(secret);
    expect(html).not.to.match(/<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    expect(html).not.to.match(/\sstyle=/, 'no inline style');
  });

  it('shows a wrong token an error and nothing else', async () => {
    await page.goto(`${t.base}/console?poll=${POLL_MS}`);
    expect(page.url()).to.equal(`${t.base}/console/?poll=${POLL_MS}`);
    expect(await page.locator('#login').isVisible()).to.equal(true);
    expect(await page.locator('#dashboard').isVisible()).to.equal(false);
    await page.locator('#token').fill('not-the-token');
    await page.locator('#token').press('Enter');
    await textBecomes(page.locator('#login-error'), /refused this token/, 'the wrong-token error');
    expect(await page.locator('#dashboard').isVisible()).to.equal(false);
    const text = await page.locator('body').innerText();
    for (const id of [a, b]) expect(text).not.to.include(id.slice(0, 8));
    expect(await page.evaluate('sessionStorage.length')).to.equal(0);
    await shot('01-wrong-token');
  });

  it('signs in with the token and shows both kernels, with health, limits and figures', async () => {
    await page.locator('#token').fill(t.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await textBecomes(stateOf(a), /^idle$/, 'kernel a idle in the table');
    await textBecomes(stateOf(b), /^idle$/, 'kernel b idle in the table');
    expect(await page.locator('#login').isVisible()).to.equal(false);
    expect(page.url()).not.to.include(t.token);
    expect(await page.evaluate("sessionStorage.getItem('aido-console-token')")).to.equal(t.token);
    await textBecomes(page.locator('#health-status'), /^ok$/, 'health ok');
    await textBecomes(page.locator('#limits'), /Memory128 MiB/, 'the memory limit');
    await textBecomes(page.locator('#controls'), /Seccompin force/, 'seccomp read back in force');
    // Memory from Docker stats against the limit; CPU from the second stats round on.
    await textBecomes(
      row(a).locator('td').nth(6),
      /MiB \/ 128 MiB \(\d+%\)/,
      'memory against the limit',
    );
    await textBecomes(
      row(a).locator('td').nth(7),
      /^\d+\.\d\d \/ 0\.50 cores$/,
      'CPU against the limit',
    );
    await shot('02-signed-in');
  });

  it('shows a kernel running a busy loop as busy, and interrupts it from the page', async () => {
    const c = await TestClient.connect(`${t.wsBase}/api/kernels/${a}/channels`, { token: t.token });
    clients.push(c);
    const loop = c.execute('while True: pass', 60_000);
    await textBecomes(stateOf(a), /^busy$/, 'kernel a busy');
    await textBecomes(row(a).locator('td').nth(4), /^1$/, 'one connection to kernel a');
    await textBecomes(
      row(a).locator('td').nth(7),
      // Some CPU, however little this loaded machine leaves it.
      /^(?!0\.00)\d\.\d\d \/ 0\.50 cores$/,
      'the loop using CPU',
    );
    await shot('03-busy');
    await row(a)
      .getByRole('button', { name: /^Interrupt kernel/ })
      .click();
    await textBecomes(page.locator('#feedback'), /Interrupted kernel/, 'the interrupt feedback');
    const done = await loop;
    expect(done.reply.content.ename).to.equal('KeyboardInterrupt');
    await textBecomes(stateOf(a), /^idle$/, 'kernel a idle again');
  });

  it('kills a kernel from the page with the keyboard alone, and sees it go', async () => {
    const kill = `Kill kernel ${b.slice(0, 8)}`;
    await page.locator('#panic').focus();
    let reached = false;
    for (let i = 0; i < 80 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = (await page.locator(':focus').getAttribute('aria-label')) === kill;
    }
    expect(reached, `Tab reaches "${kill}"`).to.equal(true);
    await page.keyboard.press('Enter');
    await textBecomes(page.locator('#feedback'), /Killed kernel/, 'the kill feedback');
    await gone(row(b), 'kernel b gone from the table');
    expect(await page.locator(':focus').getAttribute('aria-labelledby')).to.equal(
      'sandboxes-title',
    );
    expect((await t.api(`/api/kernels/${b}`)).status).to.equal(404);
    await textBecomes(
      page.locator(`#deaths tr[data-kernel-id="${b}"] .badge`),
      /^stopped$/,
      'kernel b in the deaths',
    );
  });

  it('shows an OOM death with its reason and time, in the browser locale', async () => {
    const c = clients[0]!;
    const oom = await c.execute(`b = b'x' * (${512 * MiB})`, 60_000);
    expect(oom.reply.content.ename).to.equal('KernelDied');
    const badge = page.locator(`#deaths tr[data-kernel-id="${a}"][data-cause="oom"] td`);
    await textBecomes(badge.nth(2), /^OOM$/, 'the OOM death');
    expect(await badge.nth(3).textContent()).to.match(/OOM-killed/);
    await textBecomes(stateOf(a), /^dead$/, 'kernel a dead in the table');
    expect(await row(a).textContent()).to.include('OOM-killed');
    const death = (await deaths()).find((d) => d.kernel_id === a && d.cause === 'oom');
    expect(death, 'the OOM in /api/security/events').to.not.equal(undefined);
    const local = new Intl.DateTimeFormat('en-GB', {
      dateStyle: 'short',
      timeStyle: 'medium',
      timeZone: 'UTC',
    }).format(new Date(death!.at));
    expect(await badge.nth(0).textContent()).to.equal(local);
    // A live kernel next to the dead one, for the picture and for the panic that follows.
    const fresh = (await t.startKernel()).id;
    await textBecomes(stateOf(fresh), /^idle$/, 'a fresh kernel idle');
    await textBecomes(row(fresh).locator('td').nth(6), /MiB/, 'its memory');
    await textBecomes(
      page.locator('#charts'),
      /Executions[\s\S]*[1-9]\d* in the last/,
      'executions charted',
    );
    await shot('04-oom');
    if (process.env.AIDO_UPDATE_SCREENSHOTS === '1')
      await page.screenshot({ path: 'docs/console.png', fullPage: true });
  });

  it('panics only after confirmation, shows the count and an empty table', async () => {
    await page.getByRole('button', { name: /^Panic/ }).click();
    const dialog = page.locator('#panic-dialog');
    expect(await dialog.isVisible()).to.equal(true);
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect(await dialog.isVisible()).to.equal(false);
    const listed: unknown = await (await t.api('/api/kernels')).json();
    expect(listed).to.have.length(2);
    await page.getByRole('button', { name: /^Panic/ }).click();
    await shot('05-panic-confirm');
    const answer = page.waitForResponse((r) => r.url().endsWith('/api/security/panic'));
    await page.getByRole('button', { name: 'Kill them all' }).click();
    const { killed } = (await (await answer).json()) as { killed: number };
    expect(killed).to.be.at.least(2);
    await textBecomes(
      page.locator('#feedback'),
      new RegExp(`Panic: killed ${killed} sandboxes`),
      'the panic count',
    );
    await waitUntil(
      async () => (await page.locator('#sandboxes tbody tr').count()) === 0,
      'an empty sandbox table',
      30_000,
    );
    expect(await page.locator('#sandboxes-empty').isVisible()).to.equal(true);
    await textBecomes(
      page.locator('#deaths tr[data-cause="panic"] .badge'),
      /^panic$/,
      'the panic deaths',
    );
    await shot('06-after-panic');
  });

  it('shows a kernel started through the API', async () => {
    const k = (await t.startKernel()).id;
    await textBecomes(stateOf(k), /^idle$/, 'the new kernel idle');
    expect(await page.locator('#sandboxes-empty').isVisible()).to.equal(false);
  });

  it('reads on a narrow screen without sideways scrolling of the page', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await textBecomes(page.locator('#refreshed'), /Updated/, 'a refresh at the narrow size');
    const overflow = await page.evaluate(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    );
    expect(overflow, 'page wider than the screen').to.equal(0);
    expect(await page.getByRole('button', { name: /^Panic/ }).isVisible()).to.equal(true);
    // Rows read as cards: a row's Kill button is on screen without scrolling sideways.
    const kill = await page
      .locator('#sandboxes')
      .getByRole('button', { name: /^Kill/ })
      .boundingBox();
    expect(kill, 'the Kill button laid out').to.not.equal(null);
    expect(kill!.x + kill!.width).to.be.at.most(390);
    await shot('07-narrow');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('signs out: the token and every figure leave the page', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#login').waitFor({ state: 'visible', timeout: 10_000 });
    expect(await page.evaluate('sessionStorage.length')).to.equal(0);
    expect(await page.locator('#sandboxes tbody tr').count()).to.equal(0);
    expect(await page.locator('#deaths tbody tr').count()).to.equal(0);
    expect(await page.locator('#dashboard').isVisible()).to.equal(false);
  });

  it('sent every request to the gateway only, none with the token in its URL, and broke no CSP rule', () => {
    expect(requests.length).to.be.greaterThan(10);
    for (const u of requests) {
      expect(new URL(u).origin, u).to.equal(t.base);
      expect(u, u).not.to.include(t.token);
    }
    expect(cspErrors).to.deep.equal([]);
  });
});
