/**
 * One benchmark figure. `deno task bench` collects these from every role, keeps them in
 * bench/results.json and renders BENCHMARKS.md from that file (bench/report.ts).
 * Figures are medians of several runs (`runs` holds each run's value), never a single timing.
 * @module
 */

export type BenchRole = "nlb-sidecar" | "appmesh-helper" | "network-sentry";

interface FigureFacts {
  readonly role: BenchRole;
  readonly name: string;
  /** The median of `runs`. */
  readonly value: number;
  readonly unit: string;
  readonly runs: readonly number[];
  /** How the figure was taken: the note under its table in BENCHMARKS.md. */
  readonly method: string;
  /**
   * An outcome an operator buys (deployment time, failed requests): shown in the headline table at the
   * top of BENCHMARKS.md rather than in its role's table.
   */
  readonly headline?: boolean;
}

/** A figure held against a target (`met` says whether it was), or an informational one (neither). */
export type BenchFigure =
  & FigureFacts
  & (
    | { /** The target as text, e.g. `<= 64 MiB`. */ readonly target: string; readonly met: boolean }
    | { readonly target?: undefined; readonly met?: undefined }
  );

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A value as the report prints it: two decimals below 10, one above. */
export function formatNumber(value: number): string {
  return String(Number(value.toFixed(value < 10 ? 2 : 1)));
}

/** The console line a bench prints for each figure as it is taken. */
export function figureLine(figure: BenchFigure): string {
  const verdict = figure.target === undefined ? "info   " : figure.met ? "met    " : "NOT MET";
  const target = figure.target === undefined ? "" : ` (target ${figure.target})`;
  return `${verdict} ${figure.name}: ${formatNumber(figure.value)} ${figure.unit}${target}\n        runs ${
    figure.runs.map(formatNumber).join(", ")
  }; ${figure.method}`;
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
