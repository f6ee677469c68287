/** Building the page from data with DOM calls only: text goes in as text, never as markup. */

/** The page's element `#id`, checked to be of the kind the code expects. */
export function byId<T extends HTMLElement>(id: string, kind: abstract new () => T): T;
export function byId(id: string): HTMLElement;
export function byId(id: string, kind: abstract new () => HTMLElement = HTMLElement): HTMLElement {
  const e = document.getElementById(id);
  if (!(e instanceof kind)) throw new Error(`the page has no ${kind.name} #${id}`);
  return e;
}

type Child = Node | string | null;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { className?: string; title?: string; text?: string } = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.className !== undefined) e.className = props.className;
  if (props.title !== undefined) e.title = props.title;
  if (props.text !== undefined) e.textContent = props.text;
  for (const c of children) if (c !== null) e.append(c);
  return e;
}

/** A coloured label: the colour helps, the text says it. */
export function badge(text: string, tone: Tone): HTMLSpanElement {
  return el('span', { className: `badge ${tone}`, text });
}

export type Tone = 'ok' | 'bad' | 'warn' | 'busy' | 'neutral';

/** Replaces a definition list's content with term/value pairs. */
export function facts(dl: HTMLElement, rows: [term: string, value: Child][]): void {
  dl.replaceChildren(
    ...rows.flatMap(([t, v]) => [el('dt', { text: t }), el('dd', {}, v ?? 'unknown')]),
  );
}

const SVG = 'http://www.w3.org/2000/svg';

/** A bar chart of `values`, newest on the right, scaled to its largest bar. */
export function barChart(values: readonly number[], label: string): SVGSVGElement {
  const width = 240;
  const height = 36;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const max = Math.max(1, ...values);
  const slots = Math.max(values.length, 30);
  const w = width / slots;
  values.forEach((v, i) => {
    if (v <= 0) return;
    const h = Math.max(2, (v / max) * (height - 2));
    const r = document.createElementNS(SVG, 'rect');
    r.setAttribute('x', String((slots - values.length + i) * w));
    r.setAttribute('y', String(height - h));
    r.setAttribute('width', String(Math.max(1, w - 1)));
    r.setAttribute('height', String(h));
    svg.append(r);
  });
  return svg;
}
