/** Structured JSON logging (pino); secrets are redacted wherever they could appear. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { svc: 'aido-kernel-gateway' },
    redact: {
      paths: [
        'authToken',
        'token',
        'key',
        'headers.authorization',
        'req.headers.authorization',
        'config.authToken',
      ],
      censor: '[redacted]',
    },
  });
}

/** Removes `token=` values from a URL before it is logged. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&]*/g, '$1[redacted]');
}
