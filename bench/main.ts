/**
 * `deno task bench`: every role's benchmarks, kept in bench/results.json with the machine and the Deno
 * version, then BENCHMARKS.md rendered from that file (bench/report.ts): each figure (a median of several
 * runs) against its target, and how it was taken. `deno task bench nlb-sidecar` runs one role's and leaves
 * both files alone.
 * @module
 */
import { type BenchFigure, type BenchRole, figureLine } from "./result.ts";
import { writeRun } from "./report.ts";
import { nlbSidecarBenchmarks } from "./nlb_sidecar.ts";
import { nlbFleetBenchmarks } from "./nlb_fleet.ts";
import { appmeshHelperBenchmarks } from "./appmesh_helper.ts";
import { networkSentryBenchmarks } from "./network_sentry.ts";

const suites: Record<BenchRole, () => Promise<BenchFigure[]>> = {
  "nlb-sidecar": async () => [...await nlbSidecarBenchmarks(), ...await nlbFleetBenchmarks()],
  "appmesh-helper": appmeshHelperBenchmarks,
  "network-sentry": networkSentryBenchmarks,
};

function machine(): string {
  const cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.+)/)?.[1] ?? Deno.build.arch;
  const memGiB = Number(Deno.readTextFileSync("/proc/meminfo").match(/MemTotal:\s+(\d+)/)?.[1] ?? 0) / 1024 / 1024;
  return `${navigator.hardwareConcurrency} cores (${cpu}), ${
    memGiB.toFixed(0)
  } GiB, ${Deno.build.os} ${Deno.build.arch}`;
}

if (import.meta.main) {
  const only = Deno.args[0] as BenchRole | undefined;
  if (only !== undefined && !(only in suites)) {
    console.error(`bench: unknown role ${only}; one of ${Object.keys(suites).join(", ")}`);
    Deno.exit(2);
  }
  const startedAt = new Date();
  const figures: BenchFigure[] = [];
  for (const [role, suite] of Object.entries(suites)) {
    if (only && role !== only) continue;
    console.log(`== ${role}`);
    for (const figure of await suite()) {
      figures.push(figure);
      console.log(figureLine(figure));
    }
  }
  if (!only) {
    await writeRun({
      startedAt: startedAt.toISOString(),
      machine: machine(),
      runtime: `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
      seconds: (Date.now() - startedAt.getTime()) / 1000,
      figures,
    });
    console.log("wrote bench/results.json and BENCHMARKS.md");
  }
}
