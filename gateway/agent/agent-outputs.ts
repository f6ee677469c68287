/**
 * What an agent execution produces, in nbformat's shapes: outputs (streams merged, MIME bundles,
 * errors with plain-text tracebacks), the files it created or changed, the images it displayed,
 * the document that answers the request, and the events a streaming client is sent. The
 * collector turns an execution's iopub messages into outputs as a notebook would.
 */
/** How an execution ended. */
export type AgentStatus = 'ok' | 'error' | 'timeout' | 'killed';

/** A MIME bundle: MIME type → data (base64 text for binary types). */
export type MimeBundle = Record<string, unknown>;

/** Outputs, in nbformat's shapes. */
export type AgentOutput =
  | { output_type: 'stream'; name: 'stdout' | 'stderr'; text: string }
  | {
      output_type: 'display_data';
      data: MimeBundle;
      metadata: Record<string, unknown>;
      display_id?: string;
    }
  | {
      output_type: 'execute_result';
      execution_count: number | null;
      data: MimeBundle;
      metadata: Record<string, unknown>;
    }
  | {
      output_type: 'error';
      ename: string;
      evalue: string;
      traceback: string[];
      /** The traceback as one text without ANSI colour codes. */
      traceback_text: string;
    };

/** A file the execution created or changed in /workspace. */
export interface Artifact {
  /** Relative to /workspace. */
  path: string;
  size: number;
  mime_type: string;
  change: 'created' | 'modified';
  /** Where to download it (kernel executions). */
  url?: string;
  /** Its bytes (one-shot executions, whose sandbox is gone afterwards; small files only). */
  content_base64?: string;
}

/** An image an output displayed: PNG as base64, SVG as text. */
export interface AgentImage {
  mime_type: 'image/png' | 'image/svg+xml';
  data: string;
  /** Index into `outputs`. */
  output_index: number;
}

/** The answer to an execute request. */
export interface ExecutionDocument {
  /** The kernel that ran it (not for one-shot executions: that sandbox is gone). */
  kernel_id?: string;
  status: AgentStatus;
  /** For every status but ok: what ended it. */
  error?: { ename: string; evalue: string };
  execution_count: number | null;
  outputs: AgentOutput[];
  /** Output past the size cap was dropped. */
  outputs_truncated?: true;
  artifacts: Artifact[];
  /** Why artifacts could not be determined (the listing is then empty). */
  artifacts_error?: string;
  artifacts_truncated?: true;
  images: AgentImage[];
  duration_ms: number;
}

/** What a streaming client is sent: each output as it arrives, then the whole document. */
export type AgentEvent =
  | { event: AgentOutput['output_type']; data: AgentOutput }
  | { event: 'clear_output'; data: { wait: boolean } }
  | {
      event: 'update_display_data';
      data: { display_id: string; data: MimeBundle; metadata: Record<string, unknown> };
    }
  | { event: 'done'; data: ExecutionDocument };

const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b[@-Z\\-_]/g;

/** Removes ANSI escape sequences (IPython colours its tracebacks). */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** A string, or a list of strings joined (nbformat's multiline text); else empty. */
export function textOf(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : '')).join('');
  return '';
}

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : {};
}

function displayIdOf(content: Record<string, unknown>): string | undefined {
  const id = obj(content.transient).display_id;
  return typeof id === 'string' ? id : undefined;
}

/**
 * Turns an execution's iopub messages into outputs: consecutive stream text of one name merged,
 * `clear_output` and `update_display_data` applied as a notebook would, everything past
 * `maxBytes` dropped (and flagged). `add` returns the event to report as it happens.
 */
export class OutputCollector {
  readonly outputs: AgentOutput[] = [];
  truncated = false;
  #bytes = 0;
  #clearOnNext = false;

  constructor(private readonly maxBytes: number) {}

  /**
   * Most content bytes worth parsing: an output's size in characters is at most its JSON's size
   * in bytes times six (`\u0000` escapes), so bigger content cannot fit and is not parsed.
   */
  get maxContentBytes(): number {
    return this.maxBytes * 6 + 64 * 1024;
  }

  /** An output too big to parse: dropped and flagged like any output past the limit. */
  skipOversized(): void {
    this.truncated = true;
  }

  add(msgType: string, content: Record<string, unknown>): AgentEvent | undefined {
    switch (msgType) {
      case 'stream':
        return this.#push({
          output_type: 'stream',
          name: content.name === 'stderr' ? 'stderr' : 'stdout',
          text: textOf(content.text),
        });
      case 'display_data': {
        const out: AgentOutput = {
          output_type: 'display_data',
          data: obj(content.data),
          metadata: obj(content.metadata),
        };
        const id = displayIdOf(content);
        if (id !== undefined) out.display_id = id;
        return this.#push(out);
      }
      case 'execute_result':
        return this.#push({
          output_type: 'execute_result',
          execution_count:
            typeof content.execution_count === 'number' ? content.execution_count : null,
          data: obj(content.data),
          metadata: obj(content.metadata),
        });
      case 'error': {
        const traceback = Array.isArray(content.traceback) ? content.traceback.map(textOf) : [];
        return this.#push({
          output_type: 'error',
          ename: textOf(content.ename),
          evalue: textOf(content.evalue),
          traceback,
          traceback_text: stripAnsi(traceback.join('\n')),
        });
      }
      case 'clear_output': {
        const wait = content.wait === true;
        if (wait) this.#clearOnNext = true;
        else this.#clear();
        return { event: 'clear_output', data: { wait } };
      }
      case 'update_display_data': {
        const id = displayIdOf(content);
        if (id === undefined) return undefined;
        const data = obj(content.data);
        const metadata = obj(content.metadata);
        // Every output it replaces counts the new size against the limit: one big update of many
        // small outputs sharing a display_id would otherwise multiply past it.
        const targets = this.outputs.filter(
          (o) => o.output_type === 'display_data' && o.display_id === id,
        ) as Extract<AgentOutput, { output_type: 'display_data' }>[];
        const size = JSON.stringify({ data, metadata }).length;
        let delta = 0;
        for (const o of targets)
          delta += size - JSON.stringify({ data: o.data, metadata: o.metadata }).length;
        if (delta > 0 && this.#bytes + delta > this.maxBytes) {
          this.truncated = true;
          return undefined;
        }
        this.#bytes += delta;
        for (const o of targets) {
          o.data = data;
          o.metadata = metadata;
        }
        return { event: 'update_display_data', data: { display_id: id, data, metadata } };
      }
      default:
        return undefined;
    }
  }

  #clear(): void {
    this.outputs.length = 0;
    this.#bytes = 0;
    this.#clearOnNext = false;
  }

  #push(out: AgentOutput): AgentEvent | undefined {
    if (this.#clearOnNext) this.#clear();
    const size = out.output_type === 'stream' ? out.text.length : JSON.stringify(out).length;
    if (this.truncated || this.#bytes + size > this.maxBytes) {
      this.truncated = true;
      return undefined;
    }
    this.#bytes += size;
    const last = this.outputs.at(-1);
    if (out.output_type === 'stream' && last?.output_type === 'stream' && last.name === out.name)
      last.text += out.text;
    else this.outputs.push(out.output_type === 'stream' ? { ...out } : out);
    return { event: out.output_type, data: out };
  }
}

/** PNG and SVG payloads of display_data and execute_result outputs. */
export function imagesOf(outputs: readonly AgentOutput[]): AgentImage[] {
  const images: AgentImage[] = [];
  outputs.forEach((o, i) => {
    if (o.output_type !== 'display_data' && o.output_type !== 'execute_result') return;
    const png = textOf(o.data['image/png']);
    if (png)
      images.push({ mime_type: 'image/png', data: png.replace(/\s+/g, ''), output_index: i });
    const svg = textOf(o.data['image/svg+xml']);
    if (svg) images.push({ mime_type: 'image/svg+xml', data: svg, output_index: i });
  });
  return images;
}
