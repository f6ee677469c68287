/**
 * An execution as a tool result (MCP's CallToolResult shape, which the chat loop hands to a model
 * too): readable text of every output, then the images, clipped to what fits a model's context.
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { AgentOutput, ExecutionDocument } from './agent-execution.js';

/** Text handed back per tool call at most: tool results land in a model's context. */
export const MAX_TEXT = 100_000;

export type Content = CallToolResult['content'][number];

export function clip(text: string): string {
  return text.length <= MAX_TEXT
    ? text
    : `${text.slice(0, MAX_TEXT)}\n… (${text.length - MAX_TEXT} more characters not shown)`;
}

function textOf(data: Record<string, unknown>): string | undefined {
  const t = data['text/plain'];
  return typeof t === 'string' ? t : undefined;
}

function describeOutput(o: AgentOutput): string {
  switch (o.output_type) {
    case 'stream':
      return o.name === 'stderr' ? `[stderr]\n${o.text}` : o.text;
    case 'execute_result':
      return `Out[${o.execution_count ?? ' '}]: ${textOf(o.data) ?? `(${Object.keys(o.data).join(', ')})`}`;
    case 'display_data': {
      const kinds = Object.keys(o.data).filter((k) => k !== 'text/plain');
      const text = textOf(o.data);
      return [text, kinds.length > 0 ? `(display: ${kinds.join(', ')})` : undefined]
        .filter((s) => s !== undefined)
        .join(' ');
    }
    case 'error':
      return o.traceback_text || `${o.ename}: ${o.evalue}`;
  }
}

/** A run_python result: readable text of every output, then the images. */
export function toolResultOf(doc: ExecutionDocument): CallToolResult {
  const lines = [
    `status: ${doc.status}${doc.execution_count !== null ? ` (execution ${doc.execution_count})` : ''}, ${doc.duration_ms} ms`,
  ];
  if (doc.error && !doc.outputs.some((o) => o.output_type === 'error'))
    lines.push(`${doc.error.ename}: ${doc.error.evalue}`);
  for (const o of doc.outputs) lines.push(describeOutput(o).replace(/\n$/, ''));
  if (doc.outputs_truncated) lines.push('(output past the size limit was dropped)');
  if (doc.artifacts.length > 0) {
    lines.push('files created or changed in /workspace:');
    for (const a of doc.artifacts) lines.push(`  ${a.path} (${a.size} bytes, ${a.mime_type})`);
  }
  const content: Content[] = [{ type: 'text', text: clip(lines.join('\n')) }];
  for (const img of doc.images)
    if (img.mime_type === 'image/png')
      content.push({ type: 'image', data: img.data, mimeType: 'image/png' });
  return { content, isError: doc.status !== 'ok' };
}
