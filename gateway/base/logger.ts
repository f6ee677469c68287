/** Structured JSON logging (pino); secrets are redacted wherever they could appear. */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** The gateway's logger: JSON lines to stdout, or to `destination` (tests capture lines). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { svc: 'aido-kernel-gateway' },
    // The auth token and kernel HMAC keys never reach a log line, under any of their names, at the
    // top level or one object down (a config, a connection, a request).
    redact: {
      paths: [
        'authToken',
        'token',
        'key',
        '*.authToken',
        '*.token',
        '*.key',
        '*.connection.key',
        'headers.authorization',
        'headers.cookie',
        'req.headers.authorization',
        'req.headers.cookie',
        'config.authToken',
      ],
      censor: '[redacted]',
    },
    serializers: {
      url: (u: unknown) => (typeof u === 'string' ? redactUrl(u) : u),
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * Removes `token` values from a URL before it is logged. The parameter name is compared after
 * percent-decoding, as the query parser reads it: `?%74oken=` is a token too.
 */
export function redactUrl(url: string): string {
  return url.replace(/([?&])([^=&#]*)=([^&#]*)/g, (whole, sep: string, name: string) =>
    decodedName(name) === 'token' ? `${sep}${name}=[redacted]` : whole,
  );
}

function decodedName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return name;
  }
}
