/**
 * Network sentry benchmarks on a real private Docker engine: outage detection against a blackholed
 * endpoint, offline and online transitions with 50 managed containers (a typical host) and 300 (a large
 * one), and peak resident memory of the sentry process (run with the binary's exact permissions and V8
 * flags). Each cycle is a fresh sentry process and a fresh set of containers; figures are medians over
 * the cycles.
 *
 * `deno run -A bench/network_sentry.ts` runs them alone.
 * @module
 */
import { type BenchFigure, median, peakRssMiB } from "./result.ts";
import { type DockerEngine, startDockerEngine } from "../sim/docker_engine.ts";
import { createTestCa, type RegionEndpoint, startRegionEndpoint } from "../sim/region_endpoint.ts";
import { type LogEntry, type RoleProcess, spawnRole } from "../sim/role_process.ts";
import { waitUntil } from "../sim/wait.ts";
import {
  type CageUsage,
  type ContainerHost,
  containerHost,
  describeCagedRuns,
  type HealthChecks,
  type RoleContainer,
  smallestWorkingLimit,
} from "./memory_cage.ts";

/** Host sizes: containers managed, of which `crashing` crash during the outage (restarted by Docker, removed at hand-back). */
interface HostSize {
  readonly managed: number;
  readonly crashing: number;
  readonly cycles: number;
}
const TYPICAL: HostSize = { managed: 50, crashing: 10, cycles: 5 };
/** Fewer cycles: creating 300 containers takes minutes on a small machine. */
const LARGE: HostSize = { managed: 300, crashing: 30, cycles: 2 };
const INTERVAL_S = 1;
const TIMEOUT_S = 1;
const FAILURE_THRESHOLD = 2;

interface Cycle {
  readonly detectionS: number;
  readonly offlineS: number;
  readonly onlineS: number;
  readonly peakRssMiB: number;
}

/** Where the sentry finds its CA file, Docker and a folder for its journal and log. */
interface SentryPaths {
  readonly caFile: string;
  readonly dockerHost: string;
  readonly dir: string;
}

/** Starts a sentry with these arguments; disposing of it removes what it ran in. */
type Launch = (args: string[]) => Promise<{ readonly process: RoleProcess } & AsyncDisposable>;

const onTheHost: Launch = (args) => {
  const process = spawnRole("network-sentry", { args });
  return Promise.resolve({ process, [Symbol.asyncDispose]: () => process[Symbol.asyncDispose]() });
};

async function cycle(
  engine: DockerEngine,
  endpoint: RegionEndpoint,
  paths: SentryPaths,
  size: HostSize,
  n: number,
  launch: Launch = onTheHost,
): Promise<Cycle> {
  const { managed: MANAGED, crashing: CRASHING } = size;
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
  await using launched = await launch([
    "--region=eu-test-1",
    `--endpoint=${endpoint.url}`,
    `--ca-file=${paths.caFile}`,
    `--interval=${INTERVAL_S}`,
    `--timeout=${TIMEOUT_S}`,
    `--failure-threshold=${FAILURE_THRESHOLD}`,
    `--docker-host=${paths.dockerHost}`,
    `--state-file=${paths.dir}/state-${MANAGED}-${n}.json`,
    `--logfile=${paths.dir}/sentry-${MANAGED}-${n}.log`,
  ]);
  const sentry = launched.process;
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
      60_000,
    );
    const offlineDone = Date.parse(policies(sentry.logs, "ecs-offline").at(-1)!.time);
    await Promise.all(names.slice(0, CRASHING).map((name) => engine.crash(name)));
    await waitUntil("Docker restarted the crashed containers", async () => {
      const states = await engine.states();
      return names.slice(0, CRASHING).every((name) => (states.get(name)?.restartCount ?? 0) >= 1);
    }, 30_000);
    await endpoint.set("answer");
    const reachable = await sentry.waitForLog((e) => e.message.startsWith("[ecs-online] ecs is reachable"), 30_000);
    const complete = await sentry.waitForLog((e) => e.message.includes("hand-back complete, the ECS agent"), 120_000);
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

interface CagedCycle {
  readonly cycle?: Cycle;
  /** Why the cycle did not complete, if it did not. */
  readonly failure?: string;
  readonly usage: CageUsage;
  readonly health: HealthChecks;
  /** Both transitions within their targets, no OOM kill, every `status` check passed. */
  readonly ok: boolean;
}

const DETECTION_TARGET_S = FAILURE_THRESHOLD * INTERVAL_S + TIMEOUT_S;
const TRANSITION_TARGET_S = 2;

/** One cycle with the sentry in a container limited to `limitMiB`, managing the containers of the same engine. */
async function cagedCycle(
  host: ContainerHost,
  endpoint: RegionEndpoint,
  caFile: string,
  limitMiB: number,
  n: number,
): Promise<CagedCycle> {
  let container: RoleContainer | undefined;
  const launch: Launch = async (args) =>
    container = await host.run("network-sentry", {
      limitMiB,
      env: {},
      args,
      mounts: [`${host.engine.socketPath}:/var/run/docker.sock`, `${caFile}:/ca.pem:ro`],
      check: ["status", `--state-file=/tmp/state-${n}.json`],
    });
  const paths = { caFile: "/ca.pem", dockerHost: "unix:///var/run/docker.sock", dir: "/tmp" };
  const outcome = await cycle(host.engine, endpoint, paths, TYPICAL, n, launch).then(
    (done) => ({ cycle: done }),
    (error) => ({ failure: (error as Error).message.split("\n")[0] }),
  );
  const usage = container!.usage();
  const health = container!.health();
  const c = "cycle" in outcome ? outcome.cycle : undefined;
  return {
    ...outcome,
    usage,
    health,
    ok: c !== undefined && c.detectionS <= DETECTION_TARGET_S && c.offlineS <= TRANSITION_TARGET_S &&
      c.onlineS <= TRANSITION_TARGET_S && usage.oomKills === 0 && health.failures === 0,
  };
}

/** The smallest hard limit, in 8 MiB steps, at which the sentry goes through both transitions on time. */
async function smallestHardLimit(): Promise<BenchFigure[]> {
  const host = await containerHost(1);
  if (typeof host === "string") {
    console.log(`network-sentry: hard-limit runs skipped: ${host}`);
    return [];
  }
  await using _ = host;
  const dir = await Deno.makeTempDir({ prefix: "sentry-cage-" });
  const ca = await createTestCa(dir);
  await using endpoint = startRegionEndpoint(ca);
  const candidates = Array.from({ length: 14 }, (_, i) => 24 + 8 * i);
  let n = 0;
  try {
    // One engine holds the managed containers of every run: the search goes one limit at a time.
    const found = await smallestWorkingLimit(
      candidates,
      1,
      (limit) => cagedCycle(host, endpoint, ca.caFile, limit, n++),
    );
    const r = found?.result;
    return [{
      role: "network-sentry",
      name:
        `smallest hard memory limit that goes through both transitions on time, ${TYPICAL.managed} containers (8 MiB steps)`,
      target: "<= 64 MiB",
      value: found?.limitMiB ?? NaN,
      unit: "MiB",
      met: found !== undefined && found.limitMiB <= 64,
      runs: found ? [found.limitMiB] : [],
      method: `limits ${candidates[0]}-${candidates.at(-1)} MiB searched one at a time (binary search), each one ` +
        `cycle as above with the sentry in a container (\`docker run --memory L --memory-swap L\`, ` +
        `${host.readAheadKiB} KiB read-ahead disk, the engine's socket mounted): detection <= ${DETECTION_TARGET_S} s, ` +
        `each transition <= ${TRANSITION_TARGET_S} s, no OOM kill, \`status\` every 5 s passes` +
        (r?.cycle
          ? `; at ${found!.limitMiB} MiB: detection ${round(r.cycle.detectionS)} s, offline ${
            round(r.cycle.offlineS)
          } s, online ${round(r.cycle.onlineS)} s, ${describeCagedRuns([r], "`status` every 5 s")}`
          : "; none passed"),
    }];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const round = (value: number) => Math.round(value * 10) / 10;

export async function networkSentryBenchmarks(): Promise<BenchFigure[]> {
  const dir = await Deno.makeTempDir({ prefix: "sentry-bench-" });
  const engine = await startDockerEngine();
  const ca = await createTestCa(dir);
  const endpoint = startRegionEndpoint(ca);
  const runs = new Map<HostSize, Cycle[]>([[TYPICAL, []], [LARGE, []]]);
  try {
    const paths = { caFile: ca.caFile, dockerHost: engine.host, dir };
    for (const [size, cycles] of runs) {
      for (let n = 0; n < size.cycles; n++) cycles.push(await cycle(engine, endpoint, paths, size, n));
    }
  } finally {
    await endpoint.close();
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
  const detectionTarget = DETECTION_TARGET_S;
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
  const setup = ({ managed, crashing, cycles }: HostSize) =>
    `${cycles} cycles, each a fresh sentry process (deno run with the binary's flags) on a private dockerd ` +
    `with ${managed} ECS-labelled containers (${crashing} of them crash during the outage) and a paused-then-unpaused ecs-agent`;
  const typical = runs.get(TYPICAL)!;
  const sized = (size: HostSize, transitionTargetS: number, memoryTargetMiB: number): BenchFigure[] => {
    const cycles = runs.get(size)!;
    return [
      figure(
        `offline transition, ${size.managed} containers`,
        cycles.map((c) => c.offlineS),
        transitionTargetS,
        "s",
        `from "[ecs-offline] ecs unreachable" to the last on-failure policy set (journal written, agent paused); ${
          setup(size)
        }`,
      ),
      figure(
        `online transition (cleanup), ${size.managed} containers`,
        cycles.map((c) => c.onlineS),
        transitionTargetS,
        "s",
        `from "[ecs-online] ecs is reachable" to "hand-back complete": ${size.crashing} restarted containers stopped ` +
          `and removed, ${size.managed - size.crashing} policies restored, agent unpaused, journal cleared; ${
            setup(size)
          }`,
      ),
      figure(
        `peak resident memory, ${size.managed} containers`,
        cycles.map((c) => c.peakRssMiB),
        memoryTargetMiB,
        "MiB",
        `VmHWM of the sentry process at the end of each cycle (both transitions done; Docker read every probe); ${
          setup(size)
        }`,
      ),
    ];
  };
  return [
    figure(
      "outage detection, blackholed endpoint",
      typical.map((c) => c.detectionS),
      detectionTarget,
      "s",
      `--interval ${INTERVAL_S} --timeout ${TIMEOUT_S} --failure-threshold ${FAILURE_THRESHOLD}; from the emulator ` +
        `blackholing (accept, never answer) to the "[ecs-offline] ecs unreachable" log line; target = threshold x interval + timeout; ${
          setup(TYPICAL)
        }`,
    ),
    ...sized(TYPICAL, TRANSITION_TARGET_S, 56),
    // Six times the containers, with the same 8 Docker calls in flight: six times the 50-container target; memory
    // within the 64 MiB budget of a host daemon.
    ...sized(LARGE, 6 * TRANSITION_TARGET_S, 64),
    ...await smallestHardLimit(),
  ];
}
