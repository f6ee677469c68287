/**
 * The one way a route reads its JSON body: a zod schema, and one helper that turns a body that does
 * not fit into a 400 BAD_REQUEST. Routes hand typed values on; nothing below the HTTP layer sees a
 * raw body.
 */
import type { z } from 'zod';
import { GatewayError } from '../base/errors.js';

/** What every Jupyter route says of a body that is JSON but not an object. */
export const NOT_AN_OBJECT = 'the request body must be a JSON object';

/**
 * Parses a request body with `schema`; no body (undefined or null) is `{}`, as an empty body is.
 * With `what`, the error lists every problem with its field (`invalid chat request: messages.0.role:
 * …`); without, the schema's own messages name the field (`"name" must be a string`, as Jupyter's
 * routes have always said) and the first one is the error.
 */
export function parseBody<S extends z.ZodType>(
  schema: S,
  body: unknown,
  what?: string,
): z.output<S> {
  const parsed = schema.safeParse(body ?? {});
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues;
  if (what === undefined)
    throw new GatewayError('BAD_REQUEST', issues[0]?.message ?? NOT_AN_OBJECT);
  const problems = issues.map((i) =>
    i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message,
  );
  throw new GatewayError('BAD_REQUEST', `invalid ${what} request: ${problems.join('; ')}`);
}
