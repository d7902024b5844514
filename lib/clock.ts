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

let bootOffsetMs: number | undefined;

/**
 * Milliseconds since the machine booted, on a clock that never steps: every wait, deadline and age
 * of the nlb-sidecar is on it, so NTP or an operator setting the wall clock neither ends a drain early
 * nor stops polling. `performance.now()` is monotonic but starts at each process's own start; adding
 * the boot time read once from /proc/uptime (CLOCK_BOOTTIME, kernel-wide, so shared by every
 * container of a task and by the `health` process that ECS starts in the container) puts two
 * processes on the same scale, within the 10 ms resolution of /proc/uptime. Where /proc/uptime
 * cannot be read (not Linux, no read permission) the base is the process's wall-clock start: still
 * monotonic within the process, comparable across processes only as far as the wall clock is.
 */
export function monotonicNow(): number {
  bootOffsetMs ??= readBootOffsetMs();
  return bootOffsetMs + performance.now();
}

function readBootOffsetMs(): number {
  try {
    const uptimeSeconds = Number.parseFloat(Deno.readTextFileSync("/proc/uptime"));
    if (Number.isFinite(uptimeSeconds)) return uptimeSeconds * 1000 - performance.now();
  } catch {
    // not Linux, or no read permission: fall back to the wall clock at process start
  }
  return performance.timeOrigin;
}
