// A small HTTP client for the CLI: the management API and the /v2 registry API
// of a running Kiln. Credentials come from KILN_TOKEN (an API key).
export interface ClientOptions {
  url: string;
  token?: string;
}

export class KilnApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'KilnApiError';
  }
}

export class ApiClient {
  readonly base: string;
  private readonly token?: string;

  constructor(options: ClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.token = options.token;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}`, ...extra } : extra;
  }

  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const url = path.startsWith('http') ? path : `${this.base}${path}`;
    try {
      return await fetch(url, { ...init, headers: this.headers((init.headers as Record<string, string>) ?? {}) });
    } catch (err) {
      throw new KilnApiError(0, `cannot reach Kiln at ${this.base}: ${(err as Error).cause ?? (err as Error).message}; is \`kiln serve\` running? (set --url or KILN_URL)`);
    }
  }

  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    return this.parse<T>(await this.request(path, init));
  }

  /** The answer's JSON, or a KilnApiError carrying the server's own message. */
  async parse<T>(res: Response): Promise<T> {
    const text = await res.text();
    if (!res.ok) throw new KilnApiError(res.status, errorText(res.status, text));
    return JSON.parse(text) as T;
  }
}

/**
 * The message in any error shape Kiln answers with: the management API's
 * `{"error": {"message"}}`, the registry's `{"errors": [{"message"}]}`, the
 * token endpoint's OAuth `{"error_description"}` and Fastify's own
 * `{"message"}`; the body itself only when it is none of these.
 */
export function errorText(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as {
      error?: { message?: string } | string;
      errors?: { message?: string }[];
      error_description?: string;
      message?: string;
    };
    const message =
      (typeof parsed.error === 'object' ? parsed.error?.message : undefined) ||
      parsed.errors?.map((e) => e.message).filter(Boolean).join('; ') ||
      parsed.error_description ||
      parsed.message;
    if (message) return message;
  } catch {
    // not JSON: fall through
  }
  return `HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ''}`;
}

export function clientFromEnv(url?: string): ApiClient {
  return new ApiClient({ url: url ?? process.env.KILN_URL ?? 'http://127.0.0.1:5000', token: process.env.KILN_TOKEN || undefined });
}
