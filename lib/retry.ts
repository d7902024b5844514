/**
 * Capped exponential backoff with full jitter, and the one rule that says which failures are worth
 * retrying. Transient: throttling, 5xx, timeouts, network errors. Permanent: everything that will fail
 * the same way next time (access denied, validation, not found).
 * @module
 */
import { monotonicNow, sleep } from "./clock.ts";
import { HttpStatusError, HttpUnreachableError, MalformedAnswerError } from "./http.ts";

/**
 * How long to wait between attempts: full jitter below a ceiling that doubles from `baseMs` up to `capMs`.
 *
 * @example
 * ```ts
 * const patient: Backoff = { baseMs: 1_000, capMs: 60_000 };
 * ```
 */
export interface Backoff {
  /** First delay ceiling in milliseconds. */
  readonly baseMs: number;
  /** No delay is ever longer than this. */
  readonly capMs: number;
}

export const defaultBackoff: Backoff = { baseMs: 200, capMs: 20_000 };

/** Full jitter: a uniform delay in `[0, min(cap, base * 2^attempt))`; `attempt` counts from 0. */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * Whether a failure is worth retrying later (`transient`) or will fail the same way again (`permanent`).
 *
 * @example
 * ```ts
 * const verdict: ErrorClass = classifyError(new Error("AccessDenied"));
 * ```
 */
export type ErrorClass = "transient" | "permanent";

const THROTTLING = new Set([
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "RequestThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "RequestThrottled",
  "SlowDown",
  "PriorRequestNotComplete",
  "EC2ThrottledException",
  "BandwidthLimitExceeded",
  "TransactionInProgressException",
]);

/** Errors that name a passing condition even though they arrive as HTTP 4xx. */
const TRANSIENT_CLIENT_ERRORS = new Set([
  "RequestTimeout",
  "RequestTimeoutException",
  "ExpiredToken",
  "ExpiredTokenException",
  "IDPCommunicationError",
  "ServerException",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "InternalError",
  "InternalFailure",
]);

const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTDOWN",
  "ERR_SOCKET_CONNECTION_TIMEOUT",
]);

interface SdkLikeError {
  name?: string;
  code?: string;
  message?: string;
  /** Set by the SDK's credential providers on an HTTP error from a metadata endpoint. */
  statusCode?: number;
  $fault?: "client" | "server";
  $metadata?: { httpStatusCode?: number };
  $retryable?: { throttling?: boolean };
}

/**
 * Whether retrying `error` later can succeed. Works on AWS SDK v3 errors and this project's own.
 *
 * @example
 * ```ts
 * const throttled = Object.assign(new Error("Rate exceeded"), { name: "ThrottlingException" });
 * console.log(classifyError(throttled)); // "transient"
 * ```
 */
export function classifyError(error: unknown): ErrorClass {
  if (error instanceof HttpUnreachableError || error instanceof MalformedAnswerError) return "transient";
  if (error instanceof HttpStatusError) return error.status >= 500 || error.status === 429 ? "transient" : "permanent";
  if (typeof error !== "object" || error === null) return "permanent";
  const e = error as SdkLikeError;
  const name = e.name ?? "";
  if (THROTTLING.has(name) || e.$retryable?.throttling) return "transient";
  if (TRANSIENT_CLIENT_ERRORS.has(name)) return "transient";
  if (name === "TimeoutError" || name === "AbortError" && !("$metadata" in e)) return "transient";
  if (e.code && NETWORK_CODES.has(e.code)) return "transient";
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500 || status === 429 ? "transient" : "permanent";
  if (e.$fault === "server") return "transient";
  if (name === "ProviderError" || name === "CredentialsProviderError") return classifyCredentialsError(e);
  if (error instanceof TypeError && /fetch failed|error sending request|connect|network|socket/i.test(String(e))) {
    return "transient";
  }
  return "permanent";
}

/**
 * The container and instance credential endpoints are local agents that can be briefly down or slow
 * while a task starts: their outages, timeouts and 5xx are worth waiting out; a 4xx or a malformed
 * configuration is not.
 */
function classifyCredentialsError(e: SdkLikeError): ErrorClass {
  if (e.statusCode !== undefined) return e.statusCode >= 500 || e.statusCode === 429 ? "transient" : "permanent";
  return /unable to connect|timeout/i.test(e.message ?? "") ? "transient" : "permanent";
}

/**
 * A compact, log-friendly description of any error.
 *
 * @example
 * ```ts
 * const failure = Object.assign(new Error("no such target group"), { name: "TargetGroupNotFoundException" });
 * console.log(describeError(failure)); // { error: "TargetGroupNotFoundException", message: "no such target group" }
 * ```
 */
export function describeError(error: unknown): { error: string; message: string; status?: number } {
  if (typeof error !== "object" || error === null) return { error: typeof error, message: String(error) };
  const e = error as SdkLikeError & { message?: string };
  const status = e.$metadata?.httpStatusCode ?? (error instanceof HttpStatusError ? error.status : undefined);
  return {
    error: e.code && e.name === "Error" ? e.code : e.name ?? "Error",
    message: e.message ?? String(error),
    ...(status === undefined ? {} : { status }),
  };
}

/**
 * Whether `error` is AWS refusing the caller's permissions (AccessDenied, AccessDeniedException,
 * UnauthorizedOperation, or an HTTP 403), as opposed to a missing resource or a bad request.
 *
 * @example
 * ```ts
 * const refused = Object.assign(new Error("not authorized"), { name: "AccessDeniedException" });
 * console.log(isAccessDenied(refused)); // true
 * ```
 */
export function isAccessDenied(error: unknown): boolean {
  const { error: code, status } = describeError(error);
  return /AccessDenied|UnauthorizedOperation|NotAuthorized/i.test(code) || status === 403;
}

/**
 * When {@link retry} stops and what it tells on the way.
 *
 * @example Retry for at most a minute and log every retry
 * ```ts
 * const options: RetryOptions = {
 *   now: () => performance.now(),
 *   deadline: performance.now() + 60_000,
 *   backoff: { baseMs: 500, capMs: 10_000 },
 *   onRetry: (error, attempt, delayMs) => console.warn(`attempt ${attempt} failed, again in ${delayMs} ms`, error),
 * };
 * ```
 */
export interface RetryOptions {
  /** Aborting stops the waiting at once; `retry` then throws the signal's reason. */
  readonly signal?: AbortSignal;
  /** Default 200 ms doubling up to 20 s. */
  readonly backoff?: Backoff;
  /** Give up (rethrowing the last error) once the next wait would end after this deadline, on `now`'s clock. */
  readonly deadline?: number;
  /** Which errors are retried; default {@link classifyError}. */
  readonly classify?: (error: unknown) => ErrorClass;
  /** Called before each wait, to log the failure that is being retried. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Source of the jitter, `[0, 1)`; default `Math.random`. */
  readonly random?: () => number;
  /** The clock `deadline` is compared with; default {@link monotonicNow}. */
  readonly now?: () => number;
}

/**
 * Runs `operation` until it succeeds, a permanent error occurs, the deadline passes, or `signal`
 * aborts (then the signal's reason is thrown).
 *
 * @example Reach the task metadata endpoint, riding out an agent that is still starting
 * ```ts
 * const answer = await retry(() => fetch(`${Deno.env.get("ECS_CONTAINER_METADATA_URI_V4")}/task`), {
 *   now: () => performance.now(),
 *   deadline: performance.now() + 30_000,
 * });
 * ```
 */
export async function retry<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const backoff = options.backoff ?? defaultBackoff;
  const classify = options.classify ?? classifyError;
  const now = options.now ?? monotonicNow;
  for (let attempt = 0;; attempt++) {
    if (options.signal?.aborted) throw options.signal.reason;
    try {
      return await operation(attempt);
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (classify(error) === "permanent") throw error;
      const delay = backoffDelay(attempt, backoff, options.random);
      if (options.deadline !== undefined && now() + delay > options.deadline) throw error;
      options.onRetry?.(error, attempt, delay);
      if (!await sleep(delay, options.signal)) throw options.signal!.reason;
    }
  }
}
