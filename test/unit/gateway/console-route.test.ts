/**
 * The console's static route: the page and its files with a strict CSP and nosniff, nothing else
 * (no path outside its directories, no data), and /console redirecting to /console/.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { expect } from 'chai';
import express from 'express';
import { CONSOLE_CSP, createConsoleRoute } from '../../../gateway/http/console-route.js';

describe('console route', () => {
  let dir: string;
  let server: Server;
  let base: string;

  before(async () => {
    dir = mkdtempSync('/tmp/aido-console-');
    writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>c</title>');
    writeFileSync(path.join(dir, 'console.css'), 'body{}');
    writeFileSync(path.join(dir, 'main.js'), 'export {};');
    writeFileSync(path.join(dir, 'secret.json'), '{"token":"x"}');
    const app = express();
    app.use(createConsoleRoute({ staticDir: dir, scriptDir: dir }));
    app.use((_req, res) => {
      res.status(418).end();
    });
    server = createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the page and its files with the CSP, nosniff and no framing', async () => {
    for (const [p, type] of [
      ['/console/', 'text/html'],
      ['/console/console.css', 'text/css'],
      ['/console/main.js', 'text/javascript'],
    ] as const) {
      const res = await fetch(base + p);
      expect(res.status, p).to.equal(200);
      expect(res.headers.get('content-type'), p).to.include(type);
      expect(res.headers.get('content-security-policy'), p).to.equal(CONSOLE_CSP);
      expect(res.headers.get('x-content-type-options'), p).to.equal('nosniff');
      expect(res.headers.get('x-frame-options'), p).to.equal('DENY');
    }
    expect(CONSOLE_CSP).to.include("frame-ancestors 'none'");
    expect(CONSOLE_CSP).to.include("script-src 'self'");
    expect(CONSOLE_CSP).not.to.include('unsafe-inline');
  });

  it('redirects /console to console/ (relative), keeping the query', async () => {
    const res = await fetch(`${base}/console?poll=500`, { redirect: 'manual' });
    expect(res.status).to.equal(308);
    expect(res.headers.get('location')).to.equal('console/?poll=500');
  });

  it('serves no other file, however the name is spelled', async () => {
    for (const p of [
      '/console/secret.json',
      '/console/..%2Fpackage.json',
      '/console/MAIN.JS',
      '/console/sub/main.js',
      '/console/missing.js',
    ]) {
      const res = await fetch(base + p);
      expect(res.status, p).to.equal(404);
      expect(res.headers.get('content-security-policy'), p).to.equal(CONSOLE_CSP);
    }
  });
});

describe('console route without the console files', () => {
  it('answers 404 JSON naming what is missing, and the gateway can still start', async () => {
    const app = express();
    app.use(createConsoleRoute(null));
    const server = createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const res = await fetch(
        `http://127.0.0.1:${(server.address() as AddressInfo).port}/console/`,
      );
      expect(res.status).to.equal(404);
      expect(((await res.json()) as { message: string }).message).to.match(/not installed/);
    } finally {
      server.close();
    }
  });
});
