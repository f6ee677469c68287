/**
 * The gateway's authenticated API as the page calls it: the token goes in the Authorization header
 * of every request (never in a URL), to the page's own origin only.
 */

/** A call the gateway refused or could not answer, with its `{reason, message}` when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }

  /** The token is wrong (the gateway's AUTH_REQUIRED). */
  get unauthorized(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body: unknown = await res.json();
    if (typeof body === 'object' && body !== null && 'message' in body) {
      const m = body.message;
      if (typeof m === 'string' && m !== '') message = m;
    }
  } catch {
    // Not JSON: the status line says enough.
  }
  return new ApiError(res.status, message);
}

export class GatewayApi {
  constructor(private readonly token: string) {}

  async #call(method: string, path: string): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        headers: { Authorization: `token ${this.token}` },
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
        // A hung request must not stall the refresh loop (it waits for each round to finish).
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      throw new ApiError(0, `the gateway did not answer (${String(err)})`);
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  async json(path: string): Promise<unknown> {
    return (await this.#call('GET', path)).json();
  }

  async text(path: string): Promise<string> {
    return (await this.#call('GET', path)).text();
  }

  /** POST or DELETE; resolves with the JSON body, or null for 204. */
  async act(method: 'POST' | 'DELETE', path: string): Promise<unknown> {
    const res = await this.#call(method, path);
    return res.status === 204 ? null : res.json();
  }
}
