/**
 * One benchmark figure. `deno task bench` collects these from every role and writes BENCHMARKS.md.
 * Figures are medians of several runs (`runs` holds each run's value), never a single timing.
 * @module
 */

export interface BenchFigure {
  readonly role: "nlb-sidecar" | "appmesh-helper" | "network-sentry";
  readonly name: string;
  /** The target as text, e.g. `<= 64 MiB`. */
  readonly target: string;
  /** The median of `runs`. */
  readonly value: number;
  readonly unit: string;
  readonly met: boolean;
  readonly runs: readonly number[];
  /** How the figure was taken, for the report's "reproduce" column. */
  readonly method: string;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Peak resident memory (VmHWM) of a live process, in MiB; `undefined` once it has exited. */
export async function peakRssMiB(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = Number(status.match(/VmHWM:\s+(\d+) kB/)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined;
  }
}
