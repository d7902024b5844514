/**
 * The application's own health check, asked two ways: "is it serving?" (2xx/3xx, for the `health`
 * subcommand and the startup stage) and "is it there at all?" (any HTTP answer, for the shutdown rule
 * that an app which no longer answers has nothing left to drain).
 * @module
 */
import { HttpUnreachableError, request } from "../http.ts";

export type AppAnswer =
  | { readonly kind: "answered"; readonly status: number }
  /** Refused, reset, or no answer within the timeout. */
  | { readonly kind: "silent"; readonly reason: string };

/**
 * One GET of the health check URL. Redirects are not followed: a 3xx is the app's answer. An abort of
 * `signal` rethrows its reason.
 */
export async function probeApp(url: string, timeoutMs: number, signal?: AbortSignal): Promise<AppAnswer> {
  try {
    const answer = await request(url, { timeoutMs, signal, redirect: "manual" });
    return { kind: "answered", status: answer.status };
  } catch (error) {
    if (error instanceof HttpUnreachableError) return { kind: "silent", reason: error.reason };
    throw error;
  }
}

/** Serving: a 2xx or 3xx answer. */
export function isServing(answer: AppAnswer): boolean {
  return answer.kind === "answered" && answer.status >= 200 && answer.status < 400;
}

/** For log lines: `HTTP 200` or why there was no answer. */
export function describeAppAnswer(answer: AppAnswer): string {
  return answer.kind === "answered" ? `HTTP ${answer.status}` : `no answer: ${answer.reason}`;
}
