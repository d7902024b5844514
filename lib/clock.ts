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
/** Whether {@link bootOffsetMs} came from /proc/uptime (else from the wall clock at the process's start). */
let bootBased = false;
/** `null`: read and found unreadable. */
let currentBootId: string | null | undefined;

/**
 * Milliseconds since the machine booted, on a clock that never steps: every wait, deadline and age
 * of every role is on it, so NTP or an operator setting the wall clock neither ends a drain early
 * nor stops polling. `performance.now()` is monotonic but starts at each process's own start; adding
 * the boot time read once from /proc/uptime (CLOCK_BOOTTIME, kernel-wide, so shared by every
 * container of a task and by the `health` process that ECS starts in the container) puts two
 * processes on the same scale, within the 10 ms resolution of /proc/uptime. Where /proc/uptime
 * cannot be read (not Linux, no read permission) the base is the process's wall-clock start: still
 * monotonic within the process, comparable across processes only as far as the wall clock is.
 * Like CLOCK_MONOTONIC under it, `performance.now()` stops while the machine is suspended: a process
 * that lived through a suspend reads short of the boot time by the time suspended.
 */
export function monotonicNow(): number {
  bootOffsetMs ??= readBootOffsetMs();
  return bootOffsetMs + performance.now();
}

function readBootOffsetMs(): number {
  try {
    const uptimeSeconds = Number.parseFloat(Deno.readTextFileSync("/proc/uptime"));
    if (Number.isFinite(uptimeSeconds)) {
      bootBased = true;
      return uptimeSeconds * 1000 - performance.now();
    }
  } catch {
    // not Linux, or no read permission: fall back to the wall clock at process start
  }
  return performance.timeOrigin;
}

/**
 * A reading of {@link monotonicNow} with the boot it belongs to. A boot-time reading means nothing in
 * another boot (the clock starts again at zero), so it is kept with the kernel's boot id: a random UUID
 * made early at every boot (/proc/sys/kernel/random/boot_id, random(4); what sd_id128_get_boot(3) reads).
 */
export interface BootClockReading {
  readonly bootId: string;
  /** Milliseconds since that boot began. */
  readonly ms: number;
}

/**
 * The boot clock now, for what is written to disk and compared by a later process, perhaps after a
 * reboot; `undefined` where /proc/uptime or the boot id cannot be read (not Linux, or a process that
 * no longer holds every permission, which Deno asks for under /proc: see {@link readBootClock}).
 */
export function bootClockNow(): BootClockReading | undefined {
  const ms = monotonicNow();
  currentBootId ??= readBootId();
  return bootBased && currentBootId !== null ? { bootId: currentBootId, ms } : undefined;
}

/**
 * Reads what the boot clock needs from /proc (the boot-time base and the boot id), once: call it before
 * the process gives up permissions, since Deno opens files under /proc only for a process holding all.
 */
export function readBootClock(): void {
  bootClockNow();
}

function readBootId(): string | null {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim() || null;
  } catch {
    return null;
  }
}
