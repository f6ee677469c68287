/**
 * Workspace paths as clients give them, checked before anything runs in a sandbox, and the MIME
 * type a file is served with.
 */
import { WORKSPACE_DIR } from '../../security/policy.js';
import { GatewayError } from '../base/errors.js';

/** Longest path accepted (Linux PATH_MAX) and longest name in it (NAME_MAX), in UTF-8 bytes. */
const MAX_PATH_BYTES = 4096;
const MAX_NAME_BYTES = 255;
/**
 * Checks a client's path and returns it relative to /workspace ('' is /workspace itself).
 * Accepts `a/b.csv`, `/workspace/a/b.csv`; refuses NUL and control characters, `..` segments,
 * absolute paths elsewhere, and over-long paths or names.
 */
export function workspacePath(raw: unknown): string {
  if (typeof raw !== 'string') throw new GatewayError('BAD_PATH', 'path must be a string');
  if (Buffer.byteLength(raw) > MAX_PATH_BYTES)
    throw new GatewayError('BAD_PATH', `path is longer than ${MAX_PATH_BYTES} bytes`);
  if (/[\u0000-\u001f\u007f]/.test(raw))
    throw new GatewayError('BAD_PATH', 'path contains a NUL or control character');
  let rel = raw;
  if (rel.startsWith('/')) {
    if (rel !== WORKSPACE_DIR && !rel.startsWith(`${WORKSPACE_DIR}/`))
      throw new GatewayError('BAD_PATH', `path is outside ${WORKSPACE_DIR}`);
    rel = rel.slice(WORKSPACE_DIR.length);
  }
  const segments = rel.split('/').filter((s) => s !== '' && s !== '.');
  for (const s of segments) {
    if (s === '..') throw new GatewayError('BAD_PATH', 'path must not contain ".." segments');
    if (Buffer.byteLength(s) > MAX_NAME_BYTES)
      throw new GatewayError('BAD_PATH', `a path segment is longer than ${MAX_NAME_BYTES} bytes`);
  }
  return segments.join('/');
}

const MIME: Record<string, string> = {
  txt: 'text/plain',
  log: 'text/plain',
  md: 'text/markdown',
  csv: 'text/csv',
  tsv: 'text/tab-separated-values',
  json: 'application/json',
  jsonl: 'application/x-ndjson',
  ndjson: 'application/x-ndjson',
  xml: 'application/xml',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  html: 'text/html',
  htm: 'text/html',
  css: 'text/css',
  js: 'text/javascript',
  py: 'text/x-python',
  ipynb: 'application/x-ipynb+json',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  svg: 'image/svg+xml',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  tar: 'application/x-tar',
  parquet: 'application/vnd.apache.parquet',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  npy: 'application/octet-stream',
};

/** The MIME type of a file by its extension (application/octet-stream when unknown). */
export function mimeTypeOf(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return 'application/octet-stream';
  return MIME[name.slice(dot + 1).toLowerCase()] ?? 'application/octet-stream';
}

/** Whether a MIME type is text (served with charset=utf-8). */
export function isTextMime(mime: string): boolean {
  return (
    mime.startsWith('text/') ||
    mime === 'application/json' ||
    mime === 'application/x-ndjson' ||
    mime === 'application/xml' ||
    mime === 'application/yaml' ||
    mime === 'application/x-ipynb+json' ||
    mime === 'image/svg+xml'
  );
}
