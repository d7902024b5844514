/**
 * nlb-sidecar benchmarks, each the median of several runs of the real sidecar process (the flags of its
 * binary, from lib/roles.ts) against the emulated AWS world:
 * - peak resident memory over 60 s of polling, awsvpc and bridge mode;
 * - API cost: DescribeTargetHealth calls per target group per interval over a simulated hour;
 * - detection with 30% of AWS calls throttled: delay from `draining` to the drain, and crashes;
 * - connections mode: exit delay after the last connection closes.
 *
 * Run alone: `deno run -A bench/nlb_sidecar.ts`.
 * @module
 */
import { type BenchFigure, figureLine, median, peakRssMiB } from "./result.ts";
import { startEcsWorld, type WorldOptions } from "../sim/ecs_world.ts";
import { Faults, seededRandom } from "../sim/faults.ts";
import { type LogEntry, type RoleProcess, spawnRole } from "../sim/role_process.ts";
import {
  type CageUsage,
  type ContainerHost,
  containerHost,
  describeCagedRuns,
  type HealthChecks,
  smallestWorkingLimit,
} from "./memory_cage.ts";
import { listenLoopback } from "../tests/nlb_sidecar/support.ts";

const ROLE = "nlb-sidecar";
const RUNS = 3;
/** Containers side by side, each on its own image (no page cache shared between them). */
const CAGE_SLOTS = 4;
const PEAK_TARGET_MIB = 58;

interface Run {
  readonly world: Awaited<ReturnType<typeof startEcsWorld>>;
  readonly process: RoleProcess;
  stop(): Promise<void>;
}

async function start(worldOptions: WorldOptions, env: Record<string, string>): Promise<Run> {
  const world = await startEcsWorld(worldOptions);
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-bench-" });
  const process = spawnRole(ROLE, { env: { ...world.env, STATUS_FILE: `${dir}/status.json`, ...env } });
  return {
    world,
    process,
    async stop() {
      await process[Symbol.asyncDispose]();
      await world.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const healthy = (entry: LogEntry) => entry.message.includes("is healthy");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

async function residentKiB(pid: number, field: "RssAnon" | "RssFile"): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(status.match(new RegExp(`${field}:\\s+(\\d+) kB`))?.[1] ?? 0);
}

/** Peak RSS (VmHWM) after 60 s of polling every second; the runs of one mode go side by side. */
async function peakMemory(networkMode: "awsvpc" | "bridge"): Promise<BenchFigure[]> {
  const seconds = 60;
  const runs = await Promise.all(
    Array.from({ length: RUNS }, () => start({ networkMode }, { POLLING_FREQUENCY: "1" })),
  );
  const anonPeaks = runs.map(() => 0);
  try {
    await Promise.all(runs.map((r) => r.process.waitForLog(healthy, 30_000)));
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
      for (const [i, run] of runs.entries()) {
        anonPeaks[i] = Math.max(anonPeaks[i], await residentKiB(run.process.pid, "RssAnon"));
      }
      await sleep(1_000);
    }
    const peaks = await Promise.all(runs.map((r) => peakRssMiB(r.process.pid)));
    const fileKiB = await Promise.all(runs.map((r) => residentKiB(r.process.pid, "RssFile")));
    const polls = runs.map((r) => r.world.elbv2.state.healthCalls.get(r.world.targets[0].targetGroupArn)?.length ?? 0);
    const values = peaks.map((p) => round(p ?? NaN, 1));
    const value = median(values);
    return [{
      role: ROLE,
      name: `peak RSS, ${networkMode} mode, ${seconds} s of polling`,
      target: `<= ${PEAK_TARGET_MIB} MiB`,
      value,
      unit: "MiB",
      met: value <= PEAK_TARGET_MIB,
      runs: values,
      method: `VmHWM of \`deno task ${ROLE}\` (flags of lib/roles.ts) polling every 1 s for ${seconds} s ` +
        `(${median(polls)} polls), ${RUNS} processes side by side; of it, file-backed pages of the deno executable ` +
        `${round(median(fileKiB) / 1024, 1)} MiB, anonymous memory peak ${round(median(anonPeaks) / 1024, 1)} MiB`,
    }];
  } finally {
    await Promise.all(runs.map((r) => r.stop()));
  }
}

interface CagedRun {
  /** DescribeTargetHealth calls in the window that starts at the first one. */
  readonly polls: number;
  /** From `docker run` to the first DescribeTargetHealth call; undefined if none came within 60 s. */
  readonly firstPollS?: number;
  readonly exitCode: number;
  readonly usage: CageUsage;
  readonly health: HealthChecks;
  /** On schedule: >= 90% of the polls, drained and exited 0, no OOM kill, every health check passed. */
  readonly ok: boolean;
}

/** One sidecar in a container limited to `limitMiB`: `seconds` of polling every second, then a drain. */
async function cagedSidecar(host: ContainerHost, limitMiB: number, seconds: number): Promise<CagedRun> {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  const env = { ...world.env, STATUS_FILE: "/tmp/status.json", POLLING_FREQUENCY: "1", DEREGISTRATION_WAIT: "1" };
  await using container = await host.run(ROLE, { limitMiB, env });
  const startedAt = Date.now();
  const calls = () => world.elbv2.state.healthCalls.get(world.targets[0].targetGroupArn) ?? [];
  let exited = false;
  container.process.exited.then(() => exited = true);
  while (calls().length === 0 && !exited && Date.now() - startedAt < 60_000) await sleep(100);
  const first = calls()[0]?.at;
  if (first !== undefined) await sleep(first + seconds * 1000 - Date.now());
  const polls = first === undefined ? 0 : calls().filter((call) => call.at < first + seconds * 1000).length;
  world.setState("draining");
  const exit = await Promise.race([container.process.exited, sleep(30_000).then(() => ({ code: -1 }))]);
  const usage = container.usage();
  const health = container.health();
  return {
    polls,
    firstPollS: first === undefined ? undefined : round((first - startedAt) / 1000, 1),
    exitCode: exit.code,
    usage,
    health,
    ok: polls >= 0.9 * seconds && exit.code === 0 && usage.oomKills === 0 && health.failures === 0,
  };
}

const cageMethod = (runs: readonly CagedRun[]) =>
  `time from docker run to the first poll ${runs.map((r) => r.firstPollS ?? "none in 60").join(", ")} s; ` +
  `exits 0 after the drain ${runs.filter((r) => r.exitCode === 0).length}/${runs.length}; ` +
  describeCagedRuns(runs, "`health` every 5 s");

/**
 * 60 s of polling every second and then a drain, each sidecar in a container with a hard limit (the
 * original's 64 MiB, and 48): does it keep its schedule, drain and exit 0, with no OOM kill?
 */
async function underHardLimit(host: ContainerHost, limitMiB: number): Promise<BenchFigure> {
  const seconds = 60;
  const runs = await Promise.all(Array.from({ length: RUNS }, () => cagedSidecar(host, limitMiB, seconds)));
  const polls = runs.map((r) => r.polls);
  return {
    role: ROLE,
    name: `polls kept on schedule under a ${limitMiB} MiB hard memory limit (awsvpc, ${seconds} s)`,
    target: `>= ${0.9 * seconds} polls, drain and exit 0, no OOM kill, every health check passes`,
    value: median(polls),
    unit: "polls",
    met: runs.every((r) => r.ok),
    runs: polls,
    method: `${RUNS} sidecars side by side, each in a container (\`docker run --memory ${limitMiB}m --memory-swap ` +
      `${limitMiB}m\`, ${host.readAheadKiB} KiB read-ahead disk), POLLING_FREQUENCY=1: DescribeTargetHealth calls ` +
      `in ${seconds} s from the first, then the target drains; ${cageMethod(runs)}`,
  };
}

/** The smallest hard limit, in 8 MiB steps, at which 30 s of polling stays on schedule. */
async function smallestHardLimit(host: ContainerHost): Promise<BenchFigure[]> {
  const seconds = 30;
  const candidates = Array.from({ length: 14 }, (_, i) => 24 + 8 * i);
  const found = await smallestWorkingLimit(candidates, CAGE_SLOTS, (limit) => cagedSidecar(host, limit, seconds));
  return [{
    role: ROLE,
    name: "smallest hard memory limit that keeps the polling schedule (8 MiB steps)",
    target: "<= 64 MiB (the original's limit)",
    value: found?.limitMiB ?? NaN,
    unit: "MiB",
    met: found !== undefined && found.limitMiB <= 64,
    runs: found ? [found.limitMiB] : [],
    method:
      `limits ${candidates[0]}-${candidates.at(-1)} MiB searched ${CAGE_SLOTS} at a time, each one sidecar in a ` +
      `container as above for ${seconds} s (>= ${0.9 * seconds} polls, drain, exit 0, no OOM kill, health passes); ` +
      (found ? `at ${found.limitMiB} MiB: ${found.result.polls} polls, ${cageMethod([found.result])}` : "none passed"),
  }];
}

/** DescribeTargetHealth per target group per interval, counted by the emulator over 120 intervals. */
async function apiCost(): Promise<BenchFigure> {
  const interval = 0.1;
  const intervals = 120; // an hour at the default POLLING_FREQUENCY of 30 s
  const runs = await Promise.all(Array.from({ length: RUNS }, () =>
    start(
      { networkMode: "awsvpc", targetGroups: [{ protocol: "TCP" }, { protocol: "HTTPS", containerPort: 8443 }] },
      { POLLING_FREQUENCY: String(interval) },
    )));
  try {
    await Promise.all(runs.map((r) => r.process.waitForLog(healthy, 30_000)));
    await sleep(intervals * interval * 1000 + 500);
    const perRun = runs.map((run) => {
      const perGroup = run.world.targets.map((t) => {
        const calls = (run.world.elbv2.state.healthCalls.get(t.targetGroupArn) ?? []).map((call) => call.at);
        const windowEnd = calls[0] + intervals * interval * 1000;
        return calls.filter((at) => at < windowEnd).length / intervals;
      });
      return round(Math.max(...perGroup), 3);
    });
    const value = median(perRun);
    return {
      role: ROLE,
      name: "DescribeTargetHealth calls per target group per interval (simulated hour)",
      target: "1 (within 5%, the interval jitters +-10%)",
      value,
      unit: "calls",
      met: Math.abs(value - 1) <= 0.05,
      runs: perRun,
      method: `2 target groups, POLLING_FREQUENCY=${interval}: calls the ELBv2 emulator answered per group in ` +
        `${intervals} intervals from the first call (= 1 h at 30 s); the busier group of each run`,
    };
  } finally {
    await Promise.all(runs.map((r) => r.stop()));
  }
}

/**
 * The polling interval (s) in force while the drain waited to be seen, from `from` (epoch ms) to the
 * "drain started" line: the slowest of the pace in force at `from` (POLLING_FREQUENCY or the last
 * "polling every ..." line before) and of the paces logged after. Throttling slows the polls on purpose,
 * so the drain is due within intervals of that pace.
 */
function paceWhileDraining(
  logs: readonly LogEntry[],
  from: number,
  until: LogEntry,
  configuredSeconds: number,
): number {
  const paces = logs.filter((e) =>
    e.message.startsWith("polling every") && Date.parse(e.time) <= Date.parse(until.time)
  );
  const before = paces.filter((e) => Date.parse(e.time) < from).at(-1);
  const after = paces.filter((e) => Date.parse(e.time) >= from);
  return Math.max(Number(before?.intervalSeconds ?? configuredSeconds), ...after.map((e) => Number(e.intervalSeconds)));
}

/** With 30% of ECS and ELB calls throttled: how long after `draining` the drain starts; crashes. */
async function detectionUnderThrottling(): Promise<BenchFigure[]> {
  const interval = 1;
  const batches = 3;
  const delays: number[] = [];
  let crashes = 0;
  for (let batch = 0; batch < batches; batch++) {
    const runs = await Promise.all(Array.from({ length: RUNS }, (_, i) => {
      const seed = 100 + batch * RUNS + i;
      const throttled = () => Object.assign(new Faults(seededRandom(seed)), { throttleRate: 0.3 });
      return start(
        { networkMode: "awsvpc", faults: { ecs: throttled(), elbv2: throttled() } },
        { POLLING_FREQUENCY: String(interval), DEREGISTRATION_WAIT: "0.5" },
      );
    }));
    try {
      await Promise.all(runs.map(async (run, i) => {
        await run.process.waitForLog(healthy, 60_000);
        await sleep(((i + 1) / (RUNS + 1)) * interval * 1000);
        const drainedAt = Date.now();
        run.world.setState("draining");
        const started = await run.process.waitForLog((e) => e.message.startsWith("drain started"), 30_000);
        delays.push(
          (Date.parse(started.time) - drainedAt) / 1000 /
            paceWhileDraining(run.process.logs, drainedAt, started, interval),
        );
        const exit = await run.process.exited;
        if (exit.code !== 0 || run.process.logs.some((e) => e.level === "fatal")) crashes++;
      }));
    } finally {
      await Promise.all(runs.map((r) => r.stop()));
    }
  }
  const values = delays.map((d) => round(d));
  return [{
    role: ROLE,
    name: "drain detection delay with 30% of calls throttled, in intervals of the pace in force",
    target: "<= 2 polling intervals",
    value: median(values),
    unit: "intervals",
    met: Math.max(...values) <= 2,
    runs: values,
    method: `${values.length} sidecars (POLLING_FREQUENCY=${interval}), ECS and ELBv2 emulators throttling 30% of ` +
      `calls (seeded); time from the target turning draining to the "drain started" line, over the slowest ` +
      `polling interval the sidecar logged up to then (adaptive polling slows down under throttling); met only if the ` +
      `slowest (${Math.max(...values)}) is within 2`,
  }, {
    role: ROLE,
    name: "crashes with 30% of calls throttled",
    target: "0",
    value: crashes,
    unit: "processes",
    met: crashes === 0,
    runs: [crashes],
    method: `the same ${values.length} sidecars: exits other than 0 after the drain, or fatal log lines`,
  }];
}

/** connections mode: seconds from the last connection closing to the exit. */
async function connectionsExit(): Promise<BenchFigure> {
  const quiet = 2;
  const apps = Array.from({ length: RUNS }, () => listenLoopback());
  const runs = await Promise.all(apps.map((app) =>
    start(
      { networkMode: "awsvpc", targetGroups: [{ containerPort: app.port }] },
      {
        POLLING_FREQUENCY: "0.5",
        DRAIN_MODE: "connections",
        DRAIN_QUIET_PERIOD: String(quiet),
        // The quiet period alone: the NLB floor (120 s by default) would dominate the figure.
        DRAIN_MIN_WAIT: "0",
        DEREGISTRATION_WAIT: "60",
      },
    )
  ));
  try {
    const values = await Promise.all(runs.map(async (run, i) => {
      const clients = await apps[i].connect(3);
      await run.process.waitForLog(healthy, 30_000);
      run.world.setState("draining");
      await run.process.waitForLog((e) => e.message.includes("established connections"), 30_000);
      await sleep(1_000);
      const closedAt = Date.now();
      for (const conn of [...clients, ...apps[i].accepted]) conn.close();
      const exit = await run.process.exited;
      return round((exit.at - closedAt) / 1000);
    }));
    const value = median(values);
    return {
      role: ROLE,
      name: "connections mode: exit after the last connection closed",
      target: `<= ${quiet + 1} s (DRAIN_QUIET_PERIOD ${quiet} s + 1 s)`,
      value,
      unit: "s",
      met: Math.max(...values) <= quiet + 1,
      runs: values,
      method: `real loopback TCP connections to the target port held open during the drain, then closed; ` +
        `time to the sidecar's exit; met only if the slowest run is within the target`,
    };
  } finally {
    await Promise.all(runs.map((r) => r.stop()));
    await Promise.all(apps.map((a) => a.close()));
  }
}

async function hardLimitFigures(): Promise<BenchFigure[]> {
  const host = await containerHost(CAGE_SLOTS);
  if (typeof host === "string") {
    console.log(`nlb-sidecar: hard-limit runs skipped: ${host}`);
    return [];
  }
  await using _ = host;
  return [await underHardLimit(host, 64), await underHardLimit(host, 48), ...await smallestHardLimit(host)];
}

export async function nlbSidecarBenchmarks(): Promise<BenchFigure[]> {
  return [
    ...await peakMemory("awsvpc"),
    ...await peakMemory("bridge"),
    ...await hardLimitFigures(),
    await apiCost(),
    ...await detectionUnderThrottling(),
    await connectionsExit(),
  ];
}

if (import.meta.main) {
  for (const figure of await nlbSidecarBenchmarks()) {
    console.log(figureLine(figure));
  }
}
