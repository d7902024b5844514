/**
 * appmesh-helper benchmarks, each the median of several runs of the real role process (with its
 * binary's permissions) against the Envoy emulator:
 * - connections mode: exit relative to the last inbound connection closing (target: within
 *   DRAIN_QUIET_PERIOD + 1 s; the original helper always took DRAIN_DELAY + DRAIN_TIMEOUT);
 * - fixed mode: SIGTERM-to-exit against the configured DRAIN_DELAY + DRAIN_TIMEOUT (target: within 0.5 s);
 * - peak resident memory (VmHWM) over whole runs of both modes (target: <= 48 MiB).
 *
 * `deno run -A bench/appmesh_helper.ts` prints the figures.
 * @module
 */
import { type BenchFigure, median, peakRssMiB } from "./result.ts";
import { DownstreamConnection } from "../sim/downstream.ts";
import { startEnvoyEmulator } from "../sim/envoy_admin.ts";
import { type RoleProcess, type SpawnOptions, spawnRole } from "../sim/role_process.ts";
import { majorFaults, memoryCage } from "./memory_cage.ts";

const RUNS = 5;
const QUIET_PERIOD_S = 3;
const FIXED_DELAY_S = 1;
const FIXED_TIMEOUT_S = 2;
const RSS_TARGET_MIB = 48;

interface Run {
  /** Seconds: the figure this run contributes to its timing benchmark. */
  readonly seconds: number;
  readonly peakRssMiB: number;
}

/** Samples VmHWM until the process exits; VmHWM only grows, so the last sample is the peak. */
async function watchPeakRss(role: RoleProcess): Promise<number> {
  let peak = 0;
  let exited = false;
  role.exited.then(() => exited = true);
  while (!exited) {
    peak = Math.max(peak, (await peakRssMiB(role.pid)) ?? 0);
    await new Promise((r) => setTimeout(r, 50));
  }
  return peak;
}

async function startupComplete(role: RoleProcess): Promise<void> {
  await role.waitForLog((l) => l.step === "startup-complete", 20_000);
}

/** One idle keep-alive connection and one request in flight for 2 s; returns exit minus last close. */
async function connectionsRun(): Promise<Run> {
  await using envoy = await startEnvoyEmulator();
  await using role = spawnRole("appmesh-helper", {
    env: {
      DRAIN_MODE: "connections",
      DRAIN_DELAY: "0.5",
      DRAIN_TIMEOUT: "30",
      DRAIN_QUIET_PERIOD: String(QUIET_PERIOD_S),
      ENVOY_ADMIN_URL: envoy.adminUrl,
    },
  });
  const peak = watchPeakRss(role);
  await startupComplete(role);
  const idle = await DownstreamConnection.open(envoy.ingressPort);
  const busy = await DownstreamConnection.open(envoy.ingressPort);
  const answer = busy.request("/slow?ms=2000");
  role.kill("SIGTERM");
  await answer;
  const lastClosedAt = Math.max(await idle.ended, await busy.ended);
  const exit = await role.exited;
  if (exit.code !== 0) throw new Error(`appmesh-helper exited ${exit.code}: ${role.otherOutput.join("\n")}`);
  return { seconds: (exit.at - lastClosedAt) / 1000, peakRssMiB: await peak };
}

/** Returns |SIGTERM-to-exit - (DRAIN_DELAY + DRAIN_TIMEOUT)|; `launch` runs the role under a memory cage. */
async function fixedRun(launch: Pick<SpawnOptions, "wrapper" | "denoPath"> = {}): Promise<Run & { faults: number }> {
  await using envoy = await startEnvoyEmulator();
  await using role = spawnRole("appmesh-helper", {
    ...launch,
    env: {
      DRAIN_DELAY: String(FIXED_DELAY_S),
      DRAIN_TIMEOUT: String(FIXED_TIMEOUT_S),
      ENVOY_ADMIN_URL: envoy.adminUrl,
    },
  });
  const peak = watchPeakRss(role);
  await startupComplete(role);
  const faults = await majorFaults(role.pid);
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await role.exited;
  if (exit.code !== 0) throw new Error(`appmesh-helper exited ${exit.code}: ${role.otherOutput.join("\n")}`);
  const total = FIXED_DELAY_S + FIXED_TIMEOUT_S;
  return { seconds: Math.abs((exit.at - signalledAt) / 1000 - total), peakRssMiB: await peak, faults };
}

/** The fixed-mode shutdown again, each run in a cgroup with a hard limit of the RSS target. */
async function underHardLimit(): Promise<BenchFigure[]> {
  const cage = await memoryCage(RSS_TARGET_MIB);
  if (typeof cage === "string") {
    console.log(`appmesh-helper: hard-limit runs skipped: ${cage}`);
    return [];
  }
  await using _ = cage;
  const runs: Array<Run & { faults: number }> = [];
  for (let i = 0; i < RUNS; i++) runs.push(await fixedRun(cage));
  const usage = await cage.usage();
  const seconds = runs.map((r) => round(r.seconds, 3));
  const value = round(median(seconds), 3);
  return [{
    role: "appmesh-helper",
    name: `fixed mode under a ${RSS_TARGET_MIB} MiB hard memory limit: SIGTERM-to-exit off the configured total`,
    target: "<= 0.5 s, no OOM kill",
    value,
    unit: "s",
    met: Math.max(...seconds) <= 0.5 && usage.oomKills === 0,
    runs: seconds,
    method: `the fixed-mode runs above, each in a memory cgroup limited to ${RSS_TARGET_MIB} MiB (swap off); ` +
      `OOM kills ${usage.oomKills}, cgroup peak ${round(usage.peakMiB, 1)} MiB, ` +
      `major page faults by start-up complete ${median(runs.map((r) => r.faults))} (median)`,
  }];
}

function round(value: number, digits: number): number {
  return Number(value.toFixed(digits));
}

export async function appmeshHelperBenchmarks(): Promise<BenchFigure[]> {
  const connections: Run[] = [];
  const fixed: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    connections.push(await connectionsRun());
    fixed.push(await fixedRun());
  }
  const connectionsSeconds = connections.map((r) => round(r.seconds, 3));
  const fixedSeconds = fixed.map((r) => round(r.seconds, 3));
  const rss = [...connections, ...fixed].map((r) => round(r.peakRssMiB, 1));
  const connectionsMedian = round(median(connectionsSeconds), 3);
  const fixedMedian = round(median(fixedSeconds), 3);
  const rssMedian = round(median(rss), 1);
  const hardLimit = await underHardLimit();
  return [
    {
      role: "appmesh-helper",
      name: "connections mode: exit after the last inbound connection closed",
      target: `<= ${QUIET_PERIOD_S + 1} s (DRAIN_QUIET_PERIOD ${QUIET_PERIOD_S} s + 1 s)`,
      value: connectionsMedian,
      unit: "s",
      met: connectionsMedian <= QUIET_PERIOD_S + 1,
      runs: connectionsSeconds,
      method: `deno run -A bench/appmesh_helper.ts: DRAIN_DELAY 0.5, DRAIN_TIMEOUT 30, DRAIN_QUIET_PERIOD ` +
        `${QUIET_PERIOD_S}; one idle keep-alive and one 2 s request on the emulated ingress at SIGTERM; ` +
        `helper exit minus the later of the two connection closes (${RUNS} runs)`,
    },
    {
      role: "appmesh-helper",
      name: "fixed mode: SIGTERM-to-exit off the configured DRAIN_DELAY + DRAIN_TIMEOUT",
      target: "<= 0.5 s",
      value: fixedMedian,
      unit: "s",
      met: fixedMedian <= 0.5,
      runs: fixedSeconds,
      method: `deno run -A bench/appmesh_helper.ts: DRAIN_DELAY ${FIXED_DELAY_S}, DRAIN_TIMEOUT ${FIXED_TIMEOUT_S}; ` +
        `|SIGTERM-to-exit - ${FIXED_DELAY_S + FIXED_TIMEOUT_S} s| (${RUNS} runs)`,
    },
    {
      role: "appmesh-helper",
      name: "peak resident memory (VmHWM)",
      target: `<= ${RSS_TARGET_MIB} MiB`,
      value: rssMedian,
      unit: "MiB",
      met: rssMedian <= RSS_TARGET_MIB,
      runs: rss,
      method: "deno run -A bench/appmesh_helper.ts: VmHWM sampled every 50 ms over each whole run above " +
        `(${2 * RUNS} runs, role started by deno run with its binary's flags, not a compiled binary)`,
    },
    ...hardLimit,
  ];
}

if (import.meta.main) {
  for (const figure of await appmeshHelperBenchmarks()) {
    console.log(
      `${figure.met ? "met " : "MISS"}  ${figure.name}: ${figure.value} ${figure.unit} (target ${figure.target}; ` +
        `runs ${figure.runs.join(", ")})`,
    );
  }
}
