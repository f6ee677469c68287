/**
 * The sandbox table. Rows are keyed and updated in place, so a keyboard user's focus on a row's
 * button survives every refresh; a row goes only when its sandbox does.
 */
import { badge, el, type Tone } from './dom.js';
import { bytes, cores, duration, shortId } from './format.js';
import type { Container, Kernel, Stats } from './models.js';

export type RowAction = 'interrupt' | 'restart' | 'kill';

/** One row: a kernel and its container, or a container no kernel owns (only "kill" applies). */
export interface SandboxRow {
  key: string;
  kernel: Kernel | null;
  container: Container | null;
}

interface RowCells {
  tr: HTMLTableRowElement;
  kernel: HTMLTableCellElement;
  container: HTMLTableCellElement;
  name: HTMLTableCellElement;
  state: HTMLTableCellElement;
  connections: HTMLTableCellElement;
  uptime: HTMLTableCellElement;
  memory: HTMLTableCellElement;
  cpu: HTMLTableCellElement;
  buttons: Record<RowAction, HTMLButtonElement>;
}

export function stateTone(state: string): Tone {
  switch (state) {
    case 'idle':
      return 'ok';
    case 'busy':
      return 'busy';
    case 'starting':
    case 'restarting':
      return 'warn';
    case 'dead':
    case 'exited':
      return 'bad';
    default:
      return 'neutral';
  }
}

/** Joins kernels with their containers; pooled sandboxes are counted elsewhere. */
export function sandboxRows(kernels: Kernel[], containers: Container[]): SandboxRow[] {
  const byKernel = new Map<string, Container>();
  for (const c of containers) if (c.kernelId !== null && !c.pooled) byKernel.set(c.kernelId, c);
  const rows: SandboxRow[] = kernels.map((k) => ({
    key: `k:${k.id}`,
    kernel: k,
    container: byKernel.get(k.id) ?? null,
  }));
  const known = new Set(kernels.map((k) => k.id));
  for (const c of containers)
    if (!c.pooled && (c.kernelId === null || !known.has(c.kernelId)))
      rows.push({ key: `c:${c.containerId}`, kernel: null, container: c });
  return rows;
}

export class SandboxTable {
  readonly #rows = new Map<string, RowCells>();

  constructor(
    private readonly tbody: HTMLTableSectionElement,
    private readonly onAction: (
      row: SandboxRow,
      action: RowAction,
      button: HTMLButtonElement,
    ) => void,
  ) {}

  render(rows: SandboxRow[], stats: Stats | null, now: number): void {
    const keep = new Set(rows.map((r) => r.key));
    for (const [key, cells] of this.#rows) {
      if (keep.has(key)) continue;
      // A keyboard user whose row goes (the Kill they pressed) lands on the table, not the page top.
      const region = this.tbody.closest('.scroll');
      if (cells.tr.contains(document.activeElement) && region instanceof HTMLElement)
        region.focus();
      cells.tr.remove();
      this.#rows.delete(key);
    }
    let previous: HTMLTableRowElement | null = null;
    for (const row of rows) {
      let cells = this.#rows.get(row.key);
      if (!cells) {
        cells = this.#create(row);
        this.#rows.set(row.key, cells);
      }
      this.#update(cells, row, stats, now);
      // Keep the gateway's order without re-inserting rows already in place (focus stays).
      const want: Element | null = previous
        ? previous.nextElementSibling
        : this.tbody.firstElementChild;
      if (want !== cells.tr) {
        if (previous) previous.after(cells.tr);
        else this.tbody.prepend(cells.tr);
      }
      previous = cells.tr;
    }
  }

  #create(row: SandboxRow): RowCells {
    // data-label names the column where a narrow screen shows each row as a card.
    const td = (label: string, className?: string): HTMLTableCellElement => {
      const cell = el('td', className === undefined ? {} : { className });
      cell.dataset.label = label;
      return cell;
    };
    const who = row.kernel
      ? `kernel ${shortId(row.kernel.id)}`
      : `container ${shortId(row.container?.containerId ?? '', 12)}`;
    const button = (action: RowAction, text: string): HTMLButtonElement => {
      const b = el('button', { text });
      b.type = 'button';
      b.dataset.action = action;
      b.setAttribute('aria-label', `${text} ${who}`);
      b.addEventListener('click', () => {
        this.onAction(row, action, b);
      });
      return b;
    };
    const buttons = {
      interrupt: button('interrupt', 'Interrupt'),
      restart: button('restart', 'Restart'),
      kill: button('kill', 'Kill'),
    };
    buttons.kill.classList.add('danger');
    if (!row.kernel) {
      buttons.interrupt.hidden = true;
      buttons.restart.hidden = true;
    }
    const cells: RowCells = {
      tr: el('tr'),
      kernel: td('Kernel', 'mono'),
      container: td('Container', 'mono'),
      name: td('Name'),
      state: td('State'),
      connections: td('Connections'),
      uptime: td('Uptime'),
      memory: td('Memory'),
      cpu: td('CPU'),
      buttons,
    };
    if (row.kernel) cells.tr.dataset.kernelId = row.kernel.id;
    if (row.container) cells.tr.dataset.containerId = row.container.containerId;
    const actions = td('Actions');
    actions.append(
      el('div', { className: 'row-actions' }, buttons.interrupt, buttons.restart, buttons.kill),
    );
    cells.tr.append(
      cells.kernel,
      cells.container,
      cells.name,
      cells.state,
      cells.connections,
      cells.uptime,
      cells.memory,
      cells.cpu,
      actions,
    );
    return cells;
  }

  #update(cells: RowCells, row: SandboxRow, stats: Stats | null, now: number): void {
    const k = row.kernel;
    const c = row.container;
    setText(cells.kernel, k ? shortId(k.id) : '—', k?.id);
    setText(cells.container, c ? shortId(c.containerId, 12) : '—', c?.containerId);
    setText(cells.name, k?.name ?? '');
    const state = k ? k.state : c ? `container ${c.state}` : 'unknown';
    const reason = k?.reason ?? null;
    const stateKey = `${state}\u0000${reason ?? ''}`;
    if (cells.state.dataset.value !== stateKey) {
      cells.state.dataset.value = stateKey;
      // One child per cell, so the narrow screen's card layout keeps it in its value column.
      cells.state.replaceChildren(
        el(
          'div',
          {},
          badge(state, stateTone(k ? k.state : (c?.state ?? ''))),
          reason === null ? null : el('span', { className: 'reason', text: reason }),
        ),
      );
    }
    setText(cells.connections, k?.connections === null || !k ? '—' : String(k.connections));
    const created = c?.created ? Date.parse(c.created) : NaN;
    setText(cells.uptime, Number.isNaN(created) ? '—' : duration(now - created));
    const s = c ? stats?.byContainer.get(c.containerId) : undefined;
    this.#memory(cells.memory, s?.memoryBytes ?? null, s?.memoryLimitBytes ?? null);
    const limit = stats?.cpuLimitCores ?? null;
    const cpu = s?.cpuCores ?? null;
    setText(
      cells.cpu,
      cpu === null
        ? '—'
        : limit === null
          ? `${cores(cpu)} cores`
          : `${cores(cpu)} / ${cores(limit)} cores`,
    );
    const dead = k?.state === 'dead';
    cells.buttons.interrupt.disabled = !k || dead;
    cells.buttons.restart.disabled = !k;
  }

  #memory(td: HTMLTableCellElement, used: number | null, limit: number | null): void {
    if (used === null) {
      setText(td, '—');
      return;
    }
    const text =
      limit === null || limit <= 0
        ? bytes(used)
        : `${bytes(used)} / ${bytes(limit)} (${Math.round((used / limit) * 100)}%)`;
    let label = td.querySelector('span');
    let meter = td.querySelector('meter');
    if (!label || !meter) {
      label = el('span');
      meter = el('meter');
      td.replaceChildren(el('div', {}, label, meter));
    }
    label.textContent = text;
    meter.min = 0;
    meter.max = limit !== null && limit > 0 ? limit : Math.max(used, 1);
    meter.high = meter.max * 0.8;
    meter.optimum = 0;
    meter.value = used;
    meter.setAttribute('aria-label', `memory ${text}`);
  }
}

function setText(td: HTMLElement, text: string, title?: string): void {
  if (td.textContent !== text) td.textContent = text;
  if (title !== undefined && td.title !== title) td.title = title;
}
