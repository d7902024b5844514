/**
 * Small HTTP client helpers for the local endpoints the roles talk to directly (ECS task metadata,
 * Envoy admin, an application's health check): a hard timeout per request and errors that say which
 * URL failed and how.
 * @module
 */

/** The endpoint answered, but not with a success status. */
export class HttpStatusError extends Error {
  constructor(readonly url: string, readonly status: number, readonly body: string) {
    super(`${url} answered HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ""}`);
    this.name = "HttpStatusError";
  }
}

/**
 * The endpoint answered 2xx with a body that is not what it promises (cut off, not JSON, fields
 * missing). From a local agent this is a passing state (restarting, still filling in the task), so
 * retries count it as transient.
 */
export class MalformedAnswerError extends Error {
  constructor(readonly url: string, readonly problem: string) {
    super(`${url} answered, but ${problem}`);
    this.name = "MalformedAnswerError";
  }
}

/** How a request failed before any answer: nothing listening, out of time, or anything else (DNS, TLS, reset). */
export type UnreachableKind = "refused" | "timeout" | "other";

/** No HTTP answer at all: refused, reset, DNS failure, or the timeout ran out. */
export class HttpUnreachableError extends Error {
  constructor(
    readonly url: string,
    readonly reason: string,
    options?: ErrorOptions & { kind?: UnreachableKind },
  ) {
    super(`${url} did not answer: ${reason}`, options);
    this.name = "HttpUnreachableError";
    this.kind = options?.kind ?? "other";
  }

  readonly kind: UnreachableKind;
}

/**
 * Deno's fetch reports every transport failure as `TypeError: fetch failed` and says what happened only
 * in the innermost cause, in the operating system's words (`Connection refused (os error 111)`).
 */
function innermostMessage(error: unknown): string {
  let message = (error as Error)?.message ?? String(error);
  for (let cause = (error as Error)?.cause; cause instanceof Error; cause = cause.cause) message = cause.message;
  return message;
}

export interface RequestOptions {
  readonly method?: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  readonly body?: string;
  readonly headers?: Record<string, string>;
  /** `manual` returns a 3xx answer as it is instead of following it (default `follow`). */
  readonly redirect?: RequestRedirect;
  /** Send the request over this unix socket (the URL's host is then only the `Host` header). */
  readonly unixSocket?: string;
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** One client per unix socket path, kept for the process: it pools its connections like fetch's default one. */
const unixClients = new Map<string, Deno.HttpClient>();

function unixClient(path: string): Deno.HttpClient {
  let client = unixClients.get(path);
  if (client === undefined) {
    client = Deno.createHttpClient({ proxy: { transport: "unix", path } });
    unixClients.set(path, client);
  }
  return client;
}

/**
 * Sends one request and reads the whole answer within `timeoutMs`. Any HTTP status is returned;
 * transport failures become {@link HttpUnreachableError}; an abort of `signal` rethrows its reason.
 */
export async function request(url: string, options: RequestOptions): Promise<HttpAnswer> {
  const shown = describeTarget(url, options);
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    const response = await fetch(url, {
      method: options.method ?? "GET",
      body: options.body,
      headers: options.headers,
      redirect: options.redirect,
      signal,
      client: options.unixSocket === undefined ? undefined : unixClient(options.unixSocket),
    });
    return { status: response.status, body: await response.text() };
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (timeout.aborted) {
      throw new HttpUnreachableError(shown, `no answer within ${options.timeoutMs} ms`, {
        cause: error,
        kind: "timeout",
      });
    }
    const reason = innermostMessage(error);
    const kind = /connection refused/i.test(reason) ? "refused" : "other";
    throw new HttpUnreachableError(shown, reason, { cause: error, kind });
  }
}

/** The URL as errors name it: over a unix socket, `unix://<socket>:<path and query>`. */
export function describeTarget(url: string, options: Pick<RequestOptions, "unixSocket">): string {
  if (options.unixSocket === undefined) return url;
  const { pathname, search } = new URL(url);
  return `unix://${options.unixSocket}:${pathname}${search}`;
}

/** GET `url` and parse JSON; non-2xx answers become {@link HttpStatusError}, non-JSON {@link MalformedAnswerError}. */
export async function getJson<T>(url: string, options: RequestOptions): Promise<T> {
  const answer = await request(url, options);
  const shown = describeTarget(url, options);
  if (answer.status < 200 || answer.status > 299) throw new HttpStatusError(shown, answer.status, answer.body);
  try {
    return JSON.parse(answer.body) as T;
  } catch {
    throw new MalformedAnswerError(shown, `not with JSON: ${JSON.stringify(answer.body.slice(0, 100))}`);
  }
}
