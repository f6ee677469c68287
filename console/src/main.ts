/**
 * The security console: sign in with the gateway token (kept in this tab's session storage), then
 * poll the authenticated API and show health, limits, sandboxes, recent deaths and activity, with
 * per-sandbox actions and the panic button. Every figure comes from the API; the page holds none.
 */
import { ActivityHistory, SERIES, sumByName } from './activity.js';
import { ApiError, GatewayApi } from './api.js';
import { badge, barChart, byId, el, facts, type Tone } from './dom.js';
import { bytes, localClock, localTime, shortId } from './format.js';
import {
  arr,
  bool,
  num,
  obj,
  parseContainers,
  parseDeaths,
  parseKernels,
  parseStats,
  str,
  type Death,
  type Json,
  type Stats,
} from './models.js';
import { SandboxTable, sandboxRows, type RowAction, type SandboxRow } from './sandboxes.js';

const TOKEN_KEY = 'aido-console-token';

/** Refresh period: `?poll=<ms>` (tests poll fast), 2 s by default. */
function pollInterval(): number {
  const raw = Number(new URLSearchParams(location.search).get('poll'));
  return Number.isFinite(raw) && raw >= 200 ? Math.min(raw, 60_000) : 2000;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

class ConsoleApp {
  readonly #pollMs = pollInterval();
  readonly #history = new ActivityHistory();
  readonly #table: SandboxTable;
  #api: GatewayApi | null = null;
  #timer: number | undefined;
  #stats: Stats | null = null;
  #statsRound: Promise<void> | undefined;
  #rows: SandboxRow[] = [];
  #sandboxCount = 0;
  #kernelCount = 0;
  /** Bumped at sign-out, so answers to an earlier session's requests are dropped. */
  #epoch = 0;

  constructor() {
    this.#table = new SandboxTable(
      byId('sandboxes', HTMLTableElement).tBodies[0] ?? byId('sandboxes').appendChild(el('tbody')),
      (row, action, button) => {
        void this.#act(row, action, button);
      },
    );
    byId('login-form', HTMLFormElement).addEventListener('submit', (e) => {
      e.preventDefault();
      void this.#signIn(byId('token', HTMLInputElement).value.trim());
    });
    byId('sign-out').addEventListener('click', () => {
      this.#signOut(null);
    });
    byId('panic').addEventListener('click', () => {
      this.#askPanic();
    });
    byId('panic-cancel').addEventListener('click', () => {
      byId('panic-dialog', HTMLDialogElement).close();
    });
    byId('panic-confirm').addEventListener('click', () => {
      void this.#panic();
    });
  }

  async start(): Promise<void> {
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) await this.#signIn(saved);
    else this.#showLogin(null);
  }

  // ---- signing in and out ----------------------------------------------------------------

  async #signIn(token: string): Promise<void> {
    if (token === '') {
      this.#showLogin('Type the gateway token.');
      return;
    }
    const api = new GatewayApi(token);
    try {
      // Any authenticated call proves the token; health is the first thing shown anyway.
      this.#renderHealth(obj(await api.json('/api/security/health')));
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      this.#showLogin(
        err instanceof ApiError && err.unauthorized
          ? 'The gateway refused this token.'
          : `Could not reach the gateway: ${errorText(err)}`,
      );
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    this.#api = api;
    byId('token', HTMLInputElement).value = '';
    byId('login').hidden = true;
    byId('dashboard').hidden = false;
    byId('sign-out').hidden = false;
    byId('panic').focus();
    void this.#tick();
  }

  #signOut(message: string | null): void {
    this.#epoch++;
    this.#api = null;
    window.clearTimeout(this.#timer);
    sessionStorage.removeItem(TOKEN_KEY);
    // Nothing read with the old token stays on the page.
    this.#stats = null;
    this.#table.render([], null, Date.now());
    for (const id of ['health', 'controls', 'disabled', 'limits', 'pool', 'charts', 'feedback'])
      byId(id).replaceChildren();
    byId('deaths').querySelector('tbody')?.replaceChildren();
    byId('health-status').replaceChildren();
    byId('refreshed').textContent = '';
    this.#showLogin(message);
  }

  #showLogin(error: string | null): void {
    byId('dashboard').hidden = true;
    byId('sign-out').hidden = true;
    byId('login').hidden = false;
    const e = byId('login-error');
    e.hidden = error === null;
    e.textContent = error ?? '';
    byId('token').focus();
  }

  // ---- polling ---------------------------------------------------------------------------

  async #tick(): Promise<void> {
    const api = this.#api;
    if (!api) return;
    const epoch = this.#epoch;
    // Docker stats are slow: they come in their own round and fill the table when they arrive.
    this.#statsRound ??= api
      .json('/api/security/stats')
      .then((v) => {
        if (epoch !== this.#epoch) return;
        this.#stats = parseStats(v);
        this.#table.render(this.#rows, this.#stats, Date.now());
      })
      .catch(() => undefined)
      .finally(() => {
        this.#statsRound = undefined;
      });
    const [health, kernels, containers, events, metrics] = await Promise.allSettled([
      api.json('/api/security/health'),
      api.json('/api/kernels'),
      api.json('/api/security/containers'),
      api.json('/api/security/events'),
      api.text('/metrics'),
    ]);
    if (epoch !== this.#epoch) return;
    const results = [health, kernels, containers, events, metrics];
    const refused = results.find(
      (r) => r.status === 'rejected' && r.reason instanceof ApiError && r.reason.unauthorized,
    );
    if (refused) {
      this.#signOut('The gateway no longer accepts this token. Sign in again.');
      return;
    }
    if (health.status === 'fulfilled') this.#renderHealth(obj(health.value));
    if (kernels.status === 'fulfilled' && containers.status === 'fulfilled') {
      this.#rows = sandboxRows(parseKernels(kernels.value), parseContainers(containers.value));
      this.#renderSandboxes();
    }
    if (events.status === 'fulfilled') this.#renderDeaths(parseDeaths(events.value));
    if (metrics.status === 'fulfilled') {
      this.#history.add(sumByName(metrics.value));
      this.#renderActivity();
    }
    const failed = results.filter((r) => r.status === 'rejected').length;
    byId('refreshed').textContent =
      failed === 0
        ? `Updated ${localClock(new Date())}, every ${this.#pollMs / 1000} s`
        : `Updated ${localClock(new Date())}; ${failed} of ${results.length} requests failed`;
    this.#timer = window.setTimeout(() => {
      void this.#tick();
    }, this.#pollMs);
  }

  /** Refreshes now (after an action) instead of at the next period. */
  #refreshSoon(): void {
    window.clearTimeout(this.#timer);
    this.#timer = window.setTimeout(() => {
      void this.#tick();
    }, 0);
  }

  // ---- rendering -------------------------------------------------------------------------

  #renderHealth(h: Json): void {
    const status = str(h.status) ?? 'unknown';
    byId('health-status').replaceChildren(badge(status, status === 'ok' ? 'ok' : 'bad'));
    const docker = obj(h.docker);
    const image = obj(h.image);
    const hash = str(image.hash) ?? str(image.id);
    facts(byId('health'), [
      [
        'Docker',
        docker.reachable === true
          ? `reachable, version ${str(docker.version) ?? 'unknown'}`
          : badge('unreachable', 'bad'),
      ],
      ['Runtime', str(h.runtime)],
      ['Image', str(image.name)],
      [
        'Image hash',
        image.present === false
          ? badge('image missing', 'bad')
          : hash === null
            ? null
            : shortId(hash, 19),
      ],
    ]);
    const c = obj(h.controls);
    const seccomp = obj(c.seccomp);
    const nnp = obj(c.no_new_privileges);
    const apparmor = obj(c.apparmor);
    const timeout = num(c.exec_timeout_s);
    facts(byId('controls'), [
      ['Seccomp', controlState(bool(seccomp.configured), seccomp.in_force_on_live_sandboxes)],
      ['No new privileges', controlState(bool(nnp.configured), nnp.in_force_on_live_sandboxes)],
      [
        'AppArmor',
        str(apparmor.state) === 'enforced'
          ? badge('enforced', 'ok')
          : el(
              'span',
              {},
              badge(str(apparmor.state) ?? 'off', 'bad'),
              ` ${str(apparmor.detail) ?? ''}`,
            ),
      ],
      [
        'Read-only root',
        bool(c.read_only_rootfs) === true ? badge('on', 'ok') : badge('DISABLED', 'bad'),
      ],
      [
        'Network',
        str(c.network) === 'none' ? badge('none', 'ok') : badge(str(c.network) ?? '?', 'bad'),
      ],
      [
        'Capabilities',
        str(c.capabilities) === 'all dropped' ? badge('all dropped', 'ok') : str(c.capabilities),
      ],
      [
        'Execution deadline',
        timeout === null || timeout === 0
          ? badge('DISABLED', 'bad')
          : badge(`${timeout} s, kill after ${num(c.kill_grace_s) ?? '?'} s more`, 'ok'),
      ],
    ]);
    byId('disabled').replaceChildren(
      ...arr(c.disabled).flatMap((d) =>
        typeof d === 'string' ? [el('li', { text: `Disabled: ${d}` })] : [],
      ),
    );
    const l = obj(h.limits);
    const sized = (v: unknown): string | null => {
      const n = num(v);
      return n === null ? null : bytes(n);
    };
    facts(byId('limits'), [
      ['Memory', sized(l.memoryBytes)],
      ['CPU', num(l.cpus) === null ? null : `${num(l.cpus)} cores`],
      ['Processes', num(l.pids) === null ? null : String(num(l.pids))],
      ['Open files', num(l.nofile) === null ? null : String(num(l.nofile))],
      ['/tmp', sized(l.tmpSizeBytes)],
      ['/workspace', sized(l.workspaceSizeBytes)],
    ]);
    const k = obj(h.kernels);
    const p = obj(h.pool);
    const byState = Object.entries(obj(k.by_state))
      .map(([s, n]) => `${String(n)} ${s}`)
      .join(', ');
    this.#sandboxCount = num(k.sandboxes_running) ?? 0;
    this.#kernelCount = num(k.count) ?? 0;
    facts(byId('pool'), [
      [
        'Kernels',
        `${num(k.count) ?? '?'} of at most ${num(k.max) ?? '?'}${byState ? ` (${byState})` : ''}`,
      ],
      ['Sandboxes running', String(this.#sandboxCount)],
      [
        'Warm pool',
        num(p.size) === 0
          ? 'off'
          : `${num(p.ready) ?? '?'} ready, ${num(p.starting) ?? '?'} starting, of ${num(p.size) ?? '?'}`,
      ],
    ]);
  }

  #renderSandboxes(): void {
    this.#table.render(this.#rows, this.#stats, Date.now());
    const n = this.#rows.length;
    byId('sandbox-count').textContent = `(${n})`;
    byId('sandboxes-empty').hidden = n > 0;
  }

  #renderDeaths(deaths: Death[]): void {
    const tbody = byId('deaths').querySelector('tbody');
    if (!tbody) return;
    tbody.replaceChildren(
      ...deaths.map((d) => {
        const [label, tone] = causeLabel(d);
        const cell = (label: string, props: Parameters<typeof el>[1], child?: Node) => {
          const td = el('td', props, child ?? null);
          td.dataset.label = label;
          return td;
        };
        const tr = el(
          'tr',
          {},
          cell('Time', { text: d.at ? localTime(d.at) : '—' }),
          cell('Kernel', { className: 'mono', title: d.kernelId, text: shortId(d.kernelId) }),
          cell('Cause', {}, badge(label, tone)),
          cell('Reason', { text: d.reason }),
        );
        tr.dataset.kernelId = d.kernelId;
        tr.dataset.cause = d.cause;
        return tr;
      }),
    );
    byId('deaths-empty').hidden = deaths.length > 0;
  }

  #renderActivity(): void {
    const minutes = Math.max(1, Math.round(this.#history.spanMs / 60_000));
    byId('charts').replaceChildren(
      ...SERIES.map((s) => {
        const deltas = this.#history.deltas(s.metric);
        const recent = deltas.reduce((a, b) => a + b, 0);
        const total = this.#history.total(s.metric);
        const caption = `${recent} in the last ${minutes} min`;
        const fig = el(
          'figure',
          { className: s.alarm && recent > 0 ? 'chart alarm' : 'chart' },
          el(
            'figcaption',
            {},
            el('span', { text: s.label }),
            el('span', { className: 'muted', text: `${caption}; ${total ?? '?'} since start` }),
          ),
          barChart(deltas, `${s.label}: ${caption}`),
        );
        fig.dataset.metric = s.metric;
        return fig;
      }),
    );
  }

  // ---- actions ---------------------------------------------------------------------------

  #feedback(text: string, tone: Tone): void {
    const f = byId('feedback');
    f.className = `feedback ${tone}`;
    f.textContent = `${localClock(new Date())}: ${text}`;
  }

  async #act(row: SandboxRow, action: RowAction, button: HTMLButtonElement): Promise<void> {
    const api = this.#api;
    if (!api) return;
    const kernelId = row.kernel?.id;
    const who = kernelId
      ? `kernel ${shortId(kernelId)}`
      : `container ${shortId(row.container?.containerId ?? '', 12)}`;
    const target = kernelId ? encodeURIComponent(kernelId) : null;
    // aria-disabled, not disabled: a disabled button drops the keyboard focus.
    if (button.getAttribute('aria-disabled') === 'true') return;
    button.setAttribute('aria-disabled', 'true');
    try {
      if (action === 'kill') {
        const id = target ?? encodeURIComponent(row.container?.containerId ?? '');
        await api.act('DELETE', `/api/security/containers/${id}`);
        this.#feedback(`Killed ${who}.`, 'ok');
      } else if (target !== null) {
        await api.act('POST', `/api/kernels/${target}/${action}`);
        this.#feedback(action === 'interrupt' ? `Interrupted ${who}.` : `Restarted ${who}.`, 'ok');
      }
    } catch (err) {
      this.#feedback(`Could not ${action} ${who}: ${errorText(err)}`, 'bad');
    } finally {
      button.removeAttribute('aria-disabled');
      this.#refreshSoon();
    }
  }

  #askPanic(): void {
    byId('panic-text').textContent =
      `This kills every sandbox of this gateway at once: ${this.#kernelCount} kernels, ` +
      `${this.#sandboxCount} sandboxes running now (warm pool included). Their kernels and ` +
      'unsaved work are lost. The gateway keeps serving.';
    const dialog = byId('panic-dialog', HTMLDialogElement);
    dialog.showModal();
    byId('panic-cancel').focus();
  }

  async #panic(): Promise<void> {
    const dialog = byId('panic-dialog', HTMLDialogElement);
    const api = this.#api;
    if (!api) return;
    const confirm = byId('panic-confirm', HTMLButtonElement);
    confirm.disabled = true;
    try {
      const killed = num(obj(await api.act('POST', '/api/security/panic')).killed);
      this.#feedback(`Panic: killed ${killed ?? '?'} sandboxes.`, 'ok');
    } catch (err) {
      this.#feedback(`Panic failed: ${errorText(err)}`, 'bad');
    } finally {
      confirm.disabled = false;
      dialog.close();
      byId('panic').focus();
      this.#refreshSoon();
    }
  }
}

/** A hardening switch: configured, and (when sandboxes run) found in force on every one. */
function controlState(configured: boolean | null, inForce: unknown): HTMLElement {
  if (configured !== true) return badge('DISABLED', 'bad');
  if (inForce === true) return badge('in force', 'ok');
  if (inForce === false) return badge('NOT IN FORCE on a live sandbox', 'bad');
  return badge('on (no live sandbox to check)', 'ok');
}

function causeLabel(d: Death): [string, Tone] {
  switch (d.cause) {
    case 'oom':
      return ['OOM', 'bad'];
    case 'watchdog_kill':
      return ['watchdog kill', 'bad'];
    case 'interrupt_kill':
      return ['killed after interrupt', 'bad'];
    case 'exit':
      return [`exit code ${d.exitCode ?? '?'}`, 'warn'];
    case 'panic':
      return ['panic', 'bad'];
    case 'stopped':
      return ['stopped', 'neutral'];
    case 'shutdown':
      return ['shut down', 'neutral'];
    default:
      return [d.cause, 'neutral'];
  }
}

const app = new ConsoleApp();
void app.start();
