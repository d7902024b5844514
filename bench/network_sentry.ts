/**
 * Network sentry benchmarks on a real private Docker engine: outage detection against a blackholed
 * endpoint, offline and online transitions with 50 managed containers, and peak resident memory of the
 * sentry process (run with the binary's exact permissions and V8 flags). Each cycle is a fresh sentry
 * process and a fresh set of containers; figures are medians over the cycles.
 *
 * `deno run -A bench/network_sentry.ts` runs them alone.
 * @module
 */
import { type BenchFigure, median, peakRssMiB } from "./result.ts";
import { type DockerEngine, startDockerEngine } from "../sim/docker_engine.ts";
import { createTestCa, type RegionEndpoint, startRegionEndpoint } from "../sim/region_endpoint.ts";
import { type LogEntry, spawnRole } from "../sim/role_process.ts";
import { waitUntil } from "../sim/wait.ts";

const CYCLES = 5;
const MANAGED = 50;
/** Of the managed containers, these crash during the outage, are restarted by Docker and removed at hand-back. */
const CRASHING = 10;
const INTERVAL_S = 1;
const TIMEOUT_S = 1;
const FAILURE_THRESHOLD = 2;

interface Cycle {
  readonly detectionS: number;
  readonly offlineS: number;
  readonly onlineS: number;
  readonly peakRssMiB: number;
}

async function cycle(
  engine: DockerEngine,
  endpoint: RegionEndpoint,
  caFile: string,
  dir: string,
  n: number,
): Promise<Cycle> {
  await endpoint.set("answer");
  await engine.removeAll();
  const names = Array.from({ length: MANAGED }, (_, i) => `task-${i}`);
  await engine.createAgent();
  for (let i = 0; i < names.length; i += 10) {
    await Promise.all(
      names.slice(i, i + 10).map((name, j) =>
        engine.createTask({
          name,
          family: `family-${i + j}`,
          containerName: "app",
          behaviour: "healthy",
        })
      ),
    );
  }
  const sentry = spawnRole("network-sentry", {
    args: [
      "--region=eu-test-1",
      `--endpoint=${endpoint.url}`,
      `--ca-file=${caFile}`,
      `--interval=${INTERVAL_S}`,
      `--timeout=${TIMEOUT_S}`,
      `--failure-threshold=${FAILURE_THRESHOLD}`,
      `--docker-host=${engine.host}`,
      `--state-file=${dir}/state-${n}.json`,
      `--logfile=${dir}/sentry-${n}.log`,
    ],
  });
  try {
    await sentry.waitForLog((e) => e.message.startsWith("[startup] probing"));
    await new Promise((r) => setTimeout(r, 1500));
    const cut = Date.now();
    await endpoint.set("blackhole");
    const detected = await sentry.waitForLog((e) => e.message.startsWith("[ecs-offline] ecs unreachable"), 30_000);
    const policies = (entries: LogEntry[], phase: string) =>
      entries.filter((e) => e.message.startsWith(`[${phase}] set container restart policy`));
    await waitUntil(
      `${MANAGED} on-failure policies are set`,
      () => policies(sentry.logs, "ecs-offline").length >= MANAGED,
      30_000,
    );
    const offlineDone = Date.parse(policies(sentry.logs, "ecs-offline").at(-1)!.time);
    await Promise.all(names.slice(0, CRASHING).map((name) => engine.crash(name)));
    await waitUntil("Docker restarted the crashed containers", async () => {
      const states = await engine.states();
      return names.slice(0, CRASHING).every((name) => (states.get(name)?.restartCount ?? 0) >= 1);
    }, 30_000);
    await endpoint.set("answer");
    const reachable = await sentry.waitForLog((e) => e.message.startsWith("[ecs-online] ecs is reachable"), 30_000);
    const complete = await sentry.waitForLog((e) => e.message.includes("hand-back complete, the ECS agent"), 60_000);
    const states = await engine.states();
    const removed = names.filter((name) => !states.has(name)).length;
    if (removed !== CRASHING) throw new Error(`benchmark: expected ${CRASHING} removed containers, found ${removed}`);
    const rss = await peakRssMiB(sentry.pid);
    return {
      detectionS: (Date.parse(detected.time) - cut) / 1000,
      offlineS: (offlineDone - Date.parse(detected.time)) / 1000,
      onlineS: (Date.parse(complete.time) - Date.parse(reachable.time)) / 1000,
      peakRssMiB: rss ?? Number.NaN,
    };
  } finally {
    sentry.kill("SIGTERM");
    await sentry.exited;
  }
}

export async function networkSentryBenchmarks(): Promise<BenchFigure[]> {
  const dir = await Deno.makeTempDir({ prefix: "sentry-bench-" });
  const engine = await startDockerEngine();
  const ca = await createTestCa(dir);
  const endpoint = startRegionEndpoint(ca);
  const cycles: Cycle[] = [];
  try {
    for (let n = 0; n < CYCLES; n++) cycles.push(await cycle(engine, endpoint, ca.caFile, dir, n));
  } finally {
    await endpoint.close();
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
  const detectionTarget = FAILURE_THRESHOLD * INTERVAL_S + TIMEOUT_S;
  const figure = (
    name: string,
    values: number[],
    target: number,
    unit: string,
    method: string,
  ): BenchFigure => {
    const value = Math.round(median(values) * 1000) / 1000;
    return {
      role: "network-sentry",
      name,
      target: `<= ${target} ${unit}`,
      value,
      unit,
      met: value <= target,
      runs: values.map((v) => Math.round(v * 1000) / 1000),
      method,
    };
  };
  const setup =
    `${CYCLES} cycles, each a fresh sentry process (deno run with the binary's flags) on a private dockerd ` +
    `with ${MANAGED} ECS-labelled containers (${CRASHING} of them crash during the outage) and a paused-then-unpaused ecs-agent`;
  return [
    figure(
      "outage detection, blackholed endpoint",
      cycles.map((c) => c.detectionS),
      detectionTarget,
      "s",
      `--interval ${INTERVAL_S} --timeout ${TIMEOUT_S} --failure-threshold ${FAILURE_THRESHOLD}; from the emulator ` +
        `blackholing (accept, never answer) to the "[ecs-offline] ecs unreachable" log line; target = threshold x interval + timeout; ${setup}`,
    ),
    figure(
      `offline transition, ${MANAGED} containers`,
      cycles.map((c) => c.offlineS),
      2,
      "s",
      `from "[ecs-offline] ecs unreachable" to the last on-failure policy set (journal written, agent paused); ${setup}`,
    ),
    figure(
      `online transition (cleanup), ${MANAGED} containers`,
      cycles.map((c) => c.onlineS),
      2,
      "s",
      `from "[ecs-online] ecs is reachable" to "hand-back complete": ${CRASHING} restarted containers stopped and removed, ` +
        `${MANAGED - CRASHING} policies restored, agent unpaused, journal cleared; ${setup}`,
    ),
    figure(
      "peak resident memory",
      cycles.map((c) => c.peakRssMiB),
      64,
      "MiB",
      `VmHWM of the sentry process at the end of each cycle (both transitions done); ${setup}`,
    ),
  ];
}

if (import.meta.main) {
  for (const f of await networkSentryBenchmarks()) {
    console.log(
      `${f.met ? "met " : "MISS"}  ${f.name}: ${f.value} ${f.unit} (target ${f.target}; runs ${f.runs.join(", ")})`,
    );
  }
}
