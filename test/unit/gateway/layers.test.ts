/**
 * The shape of gateway/: every file imports only from its own layer or a lower one, there are no
 * import cycles, the kernel layer never reaches the transport libraries, and a file longer than
 * 400 lines says at its top why. README's "Architecture" section draws the same layers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';

const ROOT = path.resolve(import.meta.dirname, '../../..');

/** Lowest first. protocol/ and security/ are below every gateway layer. */
const LAYERS = [
  'protocol',
  'security',
  'gateway/base',
  'gateway/runtime',
  'gateway/channels',
  'gateway/kernel',
  'gateway/agent',
  'gateway/http',
  'gateway',
] as const;

/** "No file over ~400 lines": a few lines over 400 is still about 400. */
const MAX_LINES = 420;
const REASON = /longer than 400 lines because/i;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.posix.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(rel));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

function layerOf(file: string): number {
  const dir = path.posix.dirname(file);
  const i = LAYERS.indexOf(dir as (typeof LAYERS)[number]);
  if (i < 0) throw new Error(`${file} is in no layer (${dir}): add its folder to LAYERS`);
  return i;
}

const IMPORT =
  /^\s*(?:import|export)\s[^'"]*?\sfrom\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm;

interface Source {
  file: string;
  text: string;
  /** Relative imports resolved to repository paths (.ts). */
  local: string[];
  /** Package imports (bare specifiers). */
  packages: string[];
}

function read(file: string): Source {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const local: string[] = [];
  const packages: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? '';
    if (spec.startsWith('.'))
      local.push(
        path.posix
          .normalize(path.posix.join(path.posix.dirname(file), spec))
          .replace(/\.js$/, '.ts'),
      );
    else packages.push(spec);
  }
  return { file, text, local, packages };
}

const sources = ['gateway', 'protocol', 'security'].flatMap(sourceFiles).map(read);
const byFile = new Map(sources.map((s) => [s.file, s]));

describe('gateway layers', () => {
  it('reads every gateway file, and every import resolves to a file of the tree', () => {
    expect(sources.filter((s) => s.file.startsWith('gateway/')).length).to.be.above(40);
    for (const s of sources)
      for (const t of s.local)
        if (t.endsWith('.ts')) expect(byFile.has(t), `${s.file} imports ${t}`).to.equal(true);
  });

  it('imports only from its own layer or a lower one', () => {
    const upward: string[] = [];
    for (const s of sources)
      for (const t of s.local)
        if (byFile.has(t) && layerOf(t) > layerOf(s.file)) upward.push(`${s.file} → ${t}`);
    expect(upward).to.deep.equal([]);
  });

  it('has no import cycles', () => {
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (f: string, trail: string[]): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...trail.slice(trail.indexOf(f)), f].join(' → '));
        return;
      }
      state.set(f, 'open');
      for (const t of byFile.get(f)?.local ?? []) if (byFile.has(t)) visit(t, [...trail, f]);
      state.set(f, 'done');
    };
    for (const s of sources) visit(s.file, []);
    expect(cycles).to.deep.equal([]);
  });

  it('keeps the transport libraries (ws, express) out of the kernel layer, even through its imports', () => {
    const transport = new Set(['ws', 'express']);
    // What a kernel-layer file reaches through its imports, transitively.
    const reach = (f: string, seen = new Set<string>()): Set<string> => {
      if (seen.has(f)) return seen;
      seen.add(f);
      for (const t of byFile.get(f)?.local ?? []) if (byFile.has(t)) reach(t, seen);
      return seen;
    };
    const found: string[] = [];
    for (const s of sources.filter((x) => x.file.startsWith('gateway/kernel/')))
      for (const f of reach(s.file))
        for (const p of byFile.get(f)?.packages ?? [])
          if (transport.has(p)) found.push(`${s.file} reaches ${p} through ${f}`);
    expect([...new Set(found)]).to.deep.equal([]);
  });

  it(`keeps files under ${MAX_LINES} lines, or says at the top why not`, () => {
    const long = sources
      .filter((s) => s.text.split('\n').length > MAX_LINES)
      .filter((s) => !REASON.test(s.text.slice(0, 2000)))
      .map((s) => `${s.file} (${s.text.split('\n').length} lines)`);
    expect(long).to.deep.equal([]);
  });
});
