/**
 * `deno task bench`: every role's benchmarks, then BENCHMARKS.md with the machine, the Deno version,
 * each figure (a median of several runs) against its target, and how to reproduce it.
 * `deno task bench nlb-sidecar` runs one role's and leaves BENCHMARKS.md alone.
 * @module
 */
import type { BenchFigure } from "./result.ts";
import { nlbSidecarBenchmarks } from "./nlb_sidecar.ts";
import { nlbFleetBenchmarks } from "./nlb_fleet.ts";
import { appmeshHelperBenchmarks } from "./appmesh_helper.ts";
import { networkSentryBenchmarks } from "./network_sentry.ts";

const suites: Record<BenchFigure["role"], () => Promise<BenchFigure[]>> = {
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

const round = (value: number) => Number(value.toFixed(value < 10 ? 2 : 1));

export function renderReport(figures: readonly BenchFigure[], startedAt: Date, seconds: number): string {
  const rows = figures.map((f) =>
    `| ${f.role} | ${f.name} | ${f.target} | **${round(f.value)} ${f.unit}** | ${f.met ? "met" : "NOT MET"} | ${
      f.runs.map(round).join(", ")
    } | ${f.method} |`
  );
  return [
    "# Benchmarks",
    "",
    "Written by `deno task bench` (do not edit by hand). Each figure is the median of the runs listed.",
    "",
    `- Date: ${startedAt.toISOString()}`,
    `- Machine: ${machine()}`,
    `- Deno ${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
    `- Whole run: ${seconds.toFixed(0)} s`,
    "",
    "| Role | Figure | Target | Median | Verdict | Runs | How it is measured |",
    "|---|---|---|---|---|---|---|",
    ...rows,
    "",
    "Reproduce: `make bench` (or `deno task bench [role]`; as root, for the container rows). Memory figures are the",
    "peak resident set (VmHWM) of the role's bundle (dist/bundle/, tools/bundle.ts) running as its own process with",
    "exactly the permission and V8 flags of its compiled binary, started by `deno run`: the `deno` executable (with its",
    "tooling) stands in for the smaller `denort` runtime that `deno compile` embeds, which cannot be downloaded here.",
    "Hard-limit rows run the role in a container, `docker run --memory M --memory-swap M` as ECS does for a container's",
    "`memory`, from an image of only the `deno` executable, its shared libraries and the bundle, with the role's",
    "`health` command (the sentry's `status`) run in the same container every 5 s as ECS runs a `healthCheck`.",
    "The containers' disk reads ahead 128 KiB (an ext4 loop device the bench sets up), as EBS and NVMe volumes",
    "usually do, because under a hard limit every page fault on the executable reads that much into the",
    "container's memory, and this machine's own disk, reading ahead 8 MiB, would measure the machine instead of the role.",
    "",
  ].join("\n");
}

if (import.meta.main) {
  const only = Deno.args[0] as BenchFigure["role"] | undefined;
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
      console.log(
        `${figure.met ? "met    " : "NOT MET"} ${figure.name}: ${
          round(figure.value)
        } ${figure.unit} (target ${figure.target})\n        runs ${
          figure.runs.map(round).join(", ")
        }; ${figure.method}`,
      );
    }
  }
  if (!only) {
    const report = renderReport(figures, startedAt, (Date.now() - startedAt.getTime()) / 1000);
    const path = new URL("../BENCHMARKS.md", import.meta.url).pathname;
    await Deno.writeTextFile(path, report);
    // Formatted as `deno fmt --check` (part of `make test`) expects the committed file to be.
    const formatted = await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", path] }).output();
    if (!formatted.success) throw new Error("deno fmt BENCHMARKS.md failed");
    console.log("wrote BENCHMARKS.md");
  }
}
