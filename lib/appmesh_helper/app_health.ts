/**
 * The application's own health check, asked two ways: "is it serving?" (2xx/3xx, for the `health`
 * subcommand and the startup stage) and "is it there at all?" (for the shutdown rule that an app which
 * no longer answers has nothing left to drain). For the second, how a check failed matters: only a
 * refused connection or a timeout can mean the app is gone; a DNS, TLS or reset failure cannot tell.
 * @module
 */
import { HttpUnreachableError, request } from "../http.ts";

export type AppAnswer =
  | { readonly kind: "answered"; readonly status: number }
  /** Nothing listens at the address. */
  | { readonly kind: "refused"; readonly reason: string }
  /** No whole answer within the timeout. */
  | { readonly kind: "timed-out"; readonly reason: string }
  /** Any other failure before an answer: DNS, TLS, a reset connection. */
  | { readonly kind: "failed"; readonly reason: string };

/**
 * One GET of the health check URL. Redirects are not followed: a 3xx is the app's answer. An abort of
 * `signal` rethrows its reason.
 */
export async function probeApp(url: string, timeoutMs: number, signal?: AbortSignal): Promise<AppAnswer> {
  try {
    const answer = await request(url, { timeoutMs, signal, redirect: "manual" });
    return { kind: "answered", status: answer.status };
  } catch (error) {
    if (error instanceof HttpUnreachableError) return unreachable(error);
    throw error;
  }
}

function unreachable(error: HttpUnreachableError): AppAnswer {
  const kind = error.kind === "refused" ? "refused" : error.kind === "timeout" ? "timed-out" : "failed";
  return { kind, reason: error.reason };
}

/** Serving: a 2xx or 3xx answer. */
export function isServing(answer: AppAnswer): boolean {
  return answer.kind === "answered" && answer.status >= 200 && answer.status < 400;
}

/** For log lines: `HTTP 200` or why there was no answer. */
export function describeAppAnswer(answer: AppAnswer): string {
  return answer.kind === "answered" ? `HTTP ${answer.status}` : `no answer: ${answer.reason}`;
}
