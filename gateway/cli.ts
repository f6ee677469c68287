#!/usr/bin/env node
/** `npm start`: loads the configuration, starts the gateway, shuts down cleanly on SIGINT/SIGTERM. */
import { ConfigError, configRows, loadConfig, tokenWasGenerated } from './base/config.js';
import { createGateway } from './server.js';

function usage(): string {
  const rows = configRows().map(
    (r) => `  ${r.flag.padEnd(24)} ${r.env.padEnd(26)} ${r.help} (default ${r.default})`,
  );
  return `usage: npm start -- [flags]\n\nEvery flag has an environment variable of the same meaning:\n${rows.join('\n')}\n`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage());
    return;
  }
  let config;
  try {
    config = loadConfig(process.env, argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`aido-kernel-gateway: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const gateway = createGateway(config);
  let port: number;
  try {
    port = await gateway.listen();
  } catch (err) {
    // A refusal at start (the state dir held by another gateway, a sandbox uid with a host
    // account): one clear line, no stack.
    process.stderr.write(`aido-kernel-gateway: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const url = `http://${config.ip.includes(':') ? `[${config.ip}]` : config.ip}:${port}`;
  gateway.logger.info(
    { url, image: config.kernelImage, stateDir: config.stateDir },
    'gateway listening',
  );
  process.stdout.write(`aido-kernel-gateway listening on ${url}\n`);
  if (tokenWasGenerated(process.env, argv)) {
    process.stdout.write(
      `auth token (generated; set AIDO_AUTH_TOKEN or AIDO_AUTH_TOKEN_FILE to choose one): ${config.authToken}\n`,
    );
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    gateway.logger.info({ signal }, 'shutting down');
    gateway
      .close()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        gateway.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGINT', () => {
    stop('SIGINT');
  });
  process.on('SIGTERM', () => {
    stop('SIGTERM');
  });
}

void main();
