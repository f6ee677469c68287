/**
 * Serves the security console (GET /console, /console/…): static files only, no data and no
 * token in them, so it needs no authentication. The page itself calls the authenticated API with
 * the token the operator types. Every answer carries a strict Content-Security-Policy: scripts and
 * styles from the gateway only (no inline code), requests to the gateway only, never framed.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Response } from 'express';
import { GatewayError } from '../base/errors.js';
import { sendJsonError } from './json-errors.js';

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
};

/** Only plain file names: nothing that could climb out of the console's directories. */
const ASSET = /^[a-z0-9-]+\.(?:css|js)$/;

export interface ConsoleDirs {
  /** index.html and the stylesheet (console/ in the repository). */
  staticDir: string;
  /** The compiled scripts (dist/console/, written by `npm run build`). */
  scriptDir: string;
}

/**
 * Finds console/index.html upward from this module (works from gateway/ and dist/gateway/);
 * null when the console's files are not installed (the API works without them).
 */
function findConsoleDirs(): ConsoleDirs | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(path.join(dir, 'console', 'index.html')))
      return { staticDir: path.join(dir, 'console'), scriptDir: path.join(dir, 'dist', 'console') };
    dir = path.dirname(dir);
  }
  return null;
}

function secure(res: Response): void {
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('Cache-Control', 'no-cache');
}

export function createConsoleRoute(dirs: ConsoleDirs | null = findConsoleDirs()): express.Router {
  const router = express.Router();
  if (!dirs) {
    router.get(/^\/console(?:\/.*)?$/, (_req, res) => {
      secure(res);
      sendJsonError(
        res,
        new GatewayError(
          'NOT_FOUND',
          'the security console is not installed (console/ is missing next to dist/)',
        ),
      );
    });
    return router;
  }
  const send = async (res: Response, file: string): Promise<void> => {
    secure(res);
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      const missing = file.endsWith('.js')
        ? 'the console is not built (run npm run build)'
        : 'no such console file';
      sendJsonError(res, new GatewayError('NOT_FOUND', missing));
      return;
    }
    res.setHeader('Content-Type', TYPES[path.extname(file)] ?? 'application/octet-stream');
    res.send(body);
  };
  router.get(/^\/console(?:\/.*)?$/, async (req, res) => {
    const p = new URL(req.originalUrl, 'http://gateway').pathname;
    if (p === '/console') {
      // The page's asset paths are relative to /console/. Relative here too, so a gateway served
      // under a path prefix still lands on its own console.
      secure(res);
      const q = req.originalUrl.indexOf('?');
      res.redirect(308, `console/${q >= 0 ? req.originalUrl.slice(q) : ''}`);
      return;
    }
    const name = p.slice('/console/'.length);
    if (name === '' || name === 'index.html') {
      await send(res, path.join(dirs.staticDir, 'index.html'));
      return;
    }
    if (ASSET.test(name)) {
      await send(res, path.join(name.endsWith('.js') ? dirs.scriptDir : dirs.staticDir, name));
      return;
    }
    secure(res);
    sendJsonError(res, new GatewayError('NOT_FOUND', 'no such console file'));
  });
  return router;
}
