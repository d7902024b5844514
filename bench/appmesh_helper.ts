/**
 * appmesh-helper benchmarks, each the median of several runs of the real role process (with its
 * binary's permissions) against the Envoy emulator:
 * - connections mode: exit relative to the last inbound connection closing (target: within
 *   DRAIN_QUIET_PERIOD + 1 s; the original helper always took DRAIN_DELAY + DRAIN_TIMEOUT);
 * - fixed mode: SIGTERM-to-exit against the configured DRAIN_DELAY + DRAIN_TIMEOUT (target: within 0.5 s);
 * - peak resident memory (VmHWM) over whole runs of both modes (target: <= 44 MiB);
 * - the fixed-mode shutdown in a container under a 48 MiB hard limit, and the smallest limit that works.
 *
 * `deno run -A bench/appmesh_helper.ts` prints the figures.
 * @module
 */
import { type BenchFigure, figureLine, median, peakRssMiB } from "./result.ts";
import { DownstreamConnection } from "../sim/downstream.ts";
import { startEnvoyEmulator } from "../sim/envoy_admin.ts";
import { type RoleProcess, spawnRole } from "../sim/role_process.ts";
import {
  type CageUsage,
  type ContainerHost,
  containerHost,
  describeCagedRuns,
  type HealthChecks,
  smallestWorkingLimit,
} from "./memory_cage.ts";

const RUNS = 5;
const QUIET_PERIOD_S = 3;
const FIXED_DELAY_S = 1;
const FIXED_TIMEOUT_S = 2;
const VMHWM_TARGET_MIB = 44;
const HARD_LIMIT_MIB = 48;

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

/**
 * One idle keep-alive connection and one request in flight for 2 s; returns exit minus last close. Envoy
 * never closes an idle keep-alive on a drain, so the downstream closes it once the slow answer is in, as a
 * pool does once the endpoint leaves its service discovery.
 */
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
  idle.close();
  const lastClosedAt = Math.max(await idle.ended, await busy.ended);
  const exit = await role.exited;
  if (exit.code !== 0) throw new Error(`appmesh-helper exited ${exit.code}: ${role.otherOutput.join("\n")}`);
  return { seconds: (exit.at - lastClosedAt) / 1000, peakRssMiB: await peak };
}

/** Returns |SIGTERM-to-exit - (DRAIN_DELAY + DRAIN_TIMEOUT)|. */
async function fixedRun(): Promise<Run> {
  await using envoy = await startEnvoyEmulator();
  await using role = spawnRole("appmesh-helper", { env: fixedEnv(envoy.adminUrl) });
  const peak = watchPeakRss(role);
  await startupComplete(role);
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await role.exited;
  if (exit.code !== 0) throw new Error(`appmesh-helper exited ${exit.code}: ${role.otherOutput.join("\n")}`);
  return { seconds: offTheTotal(exit.at - signalledAt), peakRssMiB: await peak };
}

const fixedEnv = (adminUrl: string) => ({
  DRAIN_DELAY: String(FIXED_DELAY_S),
  DRAIN_TIMEOUT: String(FIXED_TIMEOUT_S),
  ENVOY_ADMIN_URL: adminUrl,
});
const offTheTotal = (ms: number) => Math.abs(ms / 1000 - (FIXED_DELAY_S + FIXED_TIMEOUT_S));

interface CagedRun {
  /** From `docker run` to the startup-complete line; undefined if it did not come within 60 s. */
  readonly startupS?: number;
  /** |SIGTERM-to-exit - (DRAIN_DELAY + DRAIN_TIMEOUT)|, s, from the helper's log lines (Infinity: no exit). */
  readonly offS: number;
  readonly exitCode: number;
  readonly usage: CageUsage;
  readonly health: HealthChecks;
  /** Started, exited 0 within 0.5 s of the configured total, no OOM kill, every health check passed. */
  readonly ok: boolean;
}

/** The fixed-mode shutdown in a container limited to `limitMiB`, `holdSeconds` after start-up (health every 5 s). */
async function cagedHelper(host: ContainerHost, limitMiB: number, holdSeconds: number): Promise<CagedRun> {
  await using envoy = await startEnvoyEmulator();
  await using container = await host.run("appmesh-helper", { limitMiB, env: fixedEnv(envoy.adminUrl) });
  const startedAt = Date.now();
  const started = await container.process.waitForLog((l) => l.step === "startup-complete", 60_000)
    .then(() => true, () => false);
  const startupS = started ? round((Date.now() - startedAt) / 1000, 1) : undefined;
  if (started) await new Promise((r) => setTimeout(r, holdSeconds * 1000));
  // Checks up to the signal: once draining, the helper fails Envoy's health check on purpose, so `health` says 1.
  const health = container.health();
  container.process.kill("SIGTERM");
  const exit = await Promise.race([
    container.process.exited,
    new Promise<{ code: number }>((r) => setTimeout(() => r({ code: -1 }), 30_000)),
  ]);
  // Timed by the helper's own log lines: the signal's way through docker, dockerd and containerd (as through
  // the ECS agent) is not the helper's, and neither is the docker client's exit after the container's.
  const logged = (start: string) => container.process.logs.find((l) => l.message.startsWith(start))?.time;
  const [received, exiting] = [logged("SIGTERM received"), logged("exiting")];
  const offS = received && exiting ? round(offTheTotal(Date.parse(exiting) - Date.parse(received)), 3) : Infinity;
  const usage = container.usage();
  return {
    startupS,
    offS,
    exitCode: exit.code,
    usage,
    health,
    ok: started && exit.code === 0 && offS <= 0.5 && usage.oomKills === 0 && health.failures === 0,
  };
}

const cageMethod = (runs: readonly CagedRun[]) =>
  `time from docker run to start-up complete ${runs.map((r) => r.startupS ?? "none in 60").join(", ")} s; ` +
  `exits 0 ${runs.filter((r) => r.exitCode === 0).length}/${runs.length}; ` +
  describeCagedRuns(runs, "`health` every 5 s until SIGTERM");

const CAGE_SLOTS = 4;
/** 16 to 128 MiB. */
const CANDIDATE_LIMITS = Array.from({ length: 15 }, (_, i) => 16 + 8 * i);

/** The fixed-mode shutdown under a hard limit of the RSS target, and the smallest limit that still works. */
async function hardLimitFigures(): Promise<BenchFigure[]> {
  const host = await containerHost(CAGE_SLOTS);
  if (typeof host === "string") {
    console.log(`appmesh-helper: hard-limit runs skipped: ${host}`);
    return [];
  }
  await using _ = host;
  const hold = 20;
  const runs = await Promise.all(Array.from({ length: 3 }, () => cagedHelper(host, HARD_LIMIT_MIB, hold)));
  const seconds = runs.map((r) => r.offS);
  const candidates = CANDIDATE_LIMITS;
  const searchHold = 15;
  const found = await smallestWorkingLimit(candidates, CAGE_SLOTS, (limit) => cagedHelper(host, limit, searchHold));
  const container = (limit: number | string, s: number) =>
    `in a container (\`docker run --memory ${limit}m --memory-swap ${limit}m\`, ${host.readAheadKiB} KiB read-ahead ` +
    `disk), SIGTERM ${s} s after start-up complete, DRAIN_DELAY ${FIXED_DELAY_S}, DRAIN_TIMEOUT ${FIXED_TIMEOUT_S}, ` +
    'timed from its "SIGTERM received" to its "exiting" line';
  return [{
    role: "appmesh-helper",
    name: `fixed mode under a ${HARD_LIMIT_MIB} MiB hard memory limit: SIGTERM-to-exit off the configured total`,
    target: "<= 0.5 s, exit 0, no OOM kill, every health check passes",
    value: round(median(seconds), 3),
    unit: "s",
    met: runs.every((r) => r.ok),
    runs: seconds,
    method: `3 helpers side by side, each ${container(HARD_LIMIT_MIB, hold)}; ${cageMethod(runs)}`,
  }, {
    role: "appmesh-helper",
    name: "smallest hard memory limit that starts up and drains on time (8 MiB steps)",
    target: `<= ${HARD_LIMIT_MIB} MiB`,
    value: found?.limitMiB ?? NaN,
    unit: "MiB",
    met: found !== undefined && found.limitMiB <= HARD_LIMIT_MIB,
    runs: found ? [found.limitMiB] : [],
    method: `limits ${candidates[0]}-${candidates.at(-1)} MiB searched ${CAGE_SLOTS} at a time, each one helper ` +
      `${container("L", searchHold)}; ` +
      (found ? `at ${found.limitMiB} MiB: ${cageMethod([found.result])}` : "none passed"),
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
  const hardLimit = await hardLimitFigures();
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
        `${QUIET_PERIOD_S}; one idle keep-alive and one 2 s request on the emulated ingress at SIGTERM, the idle one ` +
        `closed by its client after the answer; helper exit minus the later of the two connection closes (${RUNS} runs)`,
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
      target: `<= ${VMHWM_TARGET_MIB} MiB`,
      value: rssMedian,
      unit: "MiB",
      met: rssMedian <= VMHWM_TARGET_MIB,
      runs: rss,
      method: "deno run -A bench/appmesh_helper.ts: VmHWM sampled every 50 ms over each whole run above " +
        `(${2 * RUNS} runs, role started by deno run with its binary's flags, not a compiled binary)`,
    },
    ...hardLimit,
  ];
}

if (import.meta.main) {
  for (const figure of await appmeshHelperBenchmarks()) {
    console.log(figureLine(figure));
  }
}
