/**
 * Waiting that a shutdown cuts short. Time reaches the decision logic only as a `now` parameter (each
 * machine is driven with the current time in milliseconds), so tests drive a machine without waiting;
 * only the adapters around it wait, through {@link sleep}.
 * @module
 */

/**
 * Waits `ms` milliseconds unless `signal` aborts first: resolves `true` when the time has passed, `false`
 * as soon as `signal` aborts. Never rejects.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
