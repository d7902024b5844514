/**
 * The daemon loop: probe (the monitor), then, under the journal's lock, observe Docker, plan and act
 * (the actuator). Docker is read every probe, so that changes no journal accounts for (eINS stopped
 * mid-outage, a lost journal) are seen at once; it is changed only when something of the sentry's is or
 * must be in effect. Nothing here decides; machine.ts does. The loop is paced on the monotonic clock, so a
 * step of the wall clock neither holds a probe back nor brings one forward; the journal and the status file
 * keep both clocks (see {@link Moment}).
 * @module
 */
import { removeStaleTempFiles } from "../atomic_file.ts";
import { bootClockNow, monotonicNow, sleep } from "../clock.ts";
import { ExitCode } from "../lifecycle.ts";
import type { Logger } from "../log.ts";
import { readStatus, writeStatus } from "../status_file.ts";
import { type Actuator, type DockerActions, runSteps, saveOrCarryOn } from "./actuator.ts";
import { type DockerHost, errorFields } from "./docker.ts";
import type { JournalStore } from "./journal.ts";
import {
  ADOPT_LEFTOVERS,
  type BootClockReading,
  countProbe,
  elapsedSince,
  HAND_BACK_COMPLETE,
  type Journal,
  type Leftovers,
  leftoversOf,
  type Moment,
  NO_PROBES,
  type Observation,
  type ProbeCounters,
  SentryMachine,
  type SentryMachineSettings,
  type Thresholds,
  type Verdict,
  verdictOf,
} from "./machine.ts";
import { type SentryMetrics, writeMetrics } from "./metrics.ts";
import type { ProbeResult } from "./probe.ts";

/** Exit codes beyond the shared ones of {@link ExitCode}. */
export const SentryExitCode = {
  /** `resume` refused: the sentry is offline or in the middle of an automatic hand-back. */
  ResumeRefused: 3,
  /** `--once`: Docker could not be read, or a Docker call failed, when the host needed protecting. */
  DockerUnavailable: 4,
} as const;

/** What the loop needs from the settings, in milliseconds (converted once, in program.ts). */
export interface SentryOptions {
  readonly intervalMs: number;
  /** The probe's own limit: a probe period is `intervalMs + probeTimeoutMs` at most. */
  readonly probeTimeoutMs: number;
  readonly thresholds: Thresholds;
  readonly machine: SentryMachineSettings;
  readonly agentContainer: string;
  readonly dryRun: boolean;
  /** One probe and one reconcile, then exit. */
  readonly once: boolean;
  readonly metricsFile?: string;
}

export interface SentryDeps {
  readonly options: SentryOptions;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** The region named in `[connect]` lines, as eINS named it. */
  readonly region: string;
  /** The URL being probed, as shown by `status`. */
  readonly endpoint: string;
  readonly probe: (signal: AbortSignal) => Promise<ProbeResult>;
  readonly docker: DockerActions & Pick<DockerHost, "observe">;
  readonly journal: JournalStore;
  /** Where probe results are kept for `status` and for a restarted (or `--once`) sentry; none in a dry run. */
  readonly statusFile?: string;
  /** The exact `resume` command an operator runs under the manual strategy. */
  readonly resumeCommand: string;
}

/** What a sentry remembers between probes besides the journal. */
export interface ProbeMemory {
  readonly counters: ProbeCounters;
  readonly lastProbe?: {
    readonly reachable: boolean;
    readonly latencyMs: number;
    /** When it ended, ms since the epoch: a timestamp for people and Prometheus, never a duration's start. */
    readonly at: number;
    readonly reason?: string;
  };
}

/** What Docker showed last that `status` and the metrics report: names, sorted. */
export interface HostFindings {
  readonly leftovers: { readonly containers: readonly string[]; readonly agentPaused: boolean };
  readonly awslogsBlocking: readonly string[];
}

/** The status file beside the journal: `state.json` -> `state.status.json`. */
export function statusFileFor(journalFile: string): string {
  return journalFile.replace(/(\.json)?$/, ".status.json");
}

/** Both clocks now: the wall clock for people and Docker, the boot clock for times passed. */
export function momentNow(): Moment {
  return { wallMs: Date.now(), bootClock: bootClockNow() };
}

/**
 * Probe streaks survive a restart when they are provably recent (within two probe periods on the boot
 * clock), so thresholds also hold across `--once` runs from a timer; an older streak says nothing about the
 * network now, and neither does one whose age only the wall clock tells (a step can make any streak look
 * recent), nor one from before a reboot.
 */
export function resumedCounters(
  saved: { updatedAt: number; details: Readonly<Record<string, unknown>> } | undefined,
  periodMs: number,
  now: Moment,
): ProbeCounters {
  if (!saved) return NO_PROBES;
  const written: Moment = { wallMs: saved.updatedAt, bootClock: bootClockOf(saved.details.bootClock) };
  if (elapsedSince(written, now).atMostMs > 2 * periodMs) return NO_PROBES;
  const counters = saved.details.counters as ProbeCounters | undefined;
  return typeof counters?.consecutiveFailures === "number" && typeof counters?.consecutiveSuccesses === "number"
    ? { consecutiveFailures: counters.consecutiveFailures, consecutiveSuccesses: counters.consecutiveSuccesses }
    : NO_PROBES;
}

/** A boot-clock reading as read back from a file, where anything may be. */
function bootClockOf(value: unknown): BootClockReading | undefined {
  const reading = value as Partial<BootClockReading> | undefined;
  return typeof reading?.bootId === "string" && typeof reading.ms === "number"
    ? { bootId: reading.bootId, ms: reading.ms }
    : undefined;
}

/** Counters kept over the process's life, for the metrics file. */
interface RunCounters {
  readonly transitions: { offline: number; online: number };
  dockerErrors: number;
}

/** What one reconcile did. */
export interface ReconcileOutcome {
  /** The journal as the sentry now holds it (in memory when the disk refused the write). */
  readonly journal: Journal;
  /** What Docker showed, unless it could not be read. */
  readonly findings?: HostFindings;
  /**
   * Docker could not be read, or a call failed, while something of the sentry's is or must be in effect:
   * the host may be unprotected until a later probe succeeds.
   */
  readonly unprotected: boolean;
  /** Docker calls that failed, the observation included. */
  readonly failedCalls: number;
  readonly wentOffline: boolean;
  readonly handedBack: boolean;
}

/** What a reconcile needs besides the verdict: the loop's collaborators and what it noticed before. */
interface ReconcileContext {
  readonly deps: SentryDeps;
  readonly machine: SentryMachine;
  readonly actuator: Actuator;
  /** What was last warned about, so that a steady condition is not repeated every probe. */
  readonly warned: { agentMissing: boolean; operatorPause: boolean };
}

/** Runs until shutdown (or one round with `--once`); returns the exit code. */
export async function runSentry(deps: SentryDeps): Promise<number> {
  const { options, log, signal } = deps;
  await removeStaleTemps(deps);
  const periodMs = options.intervalMs + options.probeTimeoutMs;
  const saved = deps.statusFile ? await readStatus(deps.statusFile).catch(() => undefined) : undefined;
  let memory: ProbeMemory = { counters: resumedCounters(saved, periodMs, momentNow()) };
  let journal = await deps.journal.load();
  let findings: HostFindings | undefined;
  const context: ReconcileContext = {
    deps,
    machine: new SentryMachine(options.machine),
    actuator: { docker: deps.docker, journal: deps.journal, log, dryRun: options.dryRun, signal },
    warned: { agentMissing: false, operatorPause: false },
  };
  const counters: RunCounters = { transitions: { offline: 0, online: 0 }, dockerErrors: 0 };
  if (journal.mode !== "online") {
    log.info("[startup] resuming from the journal: {mode} since {since}, {count} containers recorded", {
      mode: journal.mode,
      since: journal.since === undefined ? "?" : new Date(journal.since).toISOString(),
      count: journal.containers.length,
      journal: deps.journal.path,
    });
    if (journal.mode === "awaiting-resume") logResumeHint(log, deps.resumeCommand);
  }

  let pauseMs = 0;
  let unprotected = false;
  try {
    do {
      // Probes start every `interval` (not `interval` after the last one ended): a blackhole is then
      // noticed within failure-threshold x interval + timeout.
      const tickStarted = monotonicNow();
      // [begin], [connect] and [end] at INFO every round, as eINS logged them: existing log searches match.
      log.info("[begin] connectivity test..");
      const result = await deps.probe(signal);
      memory = remember(memory, result);
      logProbe(log, deps.region, result, memory.counters);
      const verdict = verdictOf(memory.counters, options.thresholds);
      const outcome = await deps.journal.locked(() => reconcile(context, verdict), signal);
      journal = outcome.journal;
      findings = outcome.findings ?? findings;
      unprotected = outcome.unprotected;
      counters.dockerErrors += outcome.failedCalls;
      if (outcome.wentOffline) counters.transitions.offline++;
      if (outcome.handedBack) counters.transitions.online++;
      await record(deps, { journal, memory, findings, counters });
      if (options.once || signal.aborted) break;
      // Whole milliseconds, as the log line shows them: the monotonic clock has fractions.
      pauseMs = Math.max(0, Math.round(options.intervalMs - (monotonicNow() - tickStarted)));
      log.info("[end] sleeping for {seconds} seconds..", { seconds: pauseMs / 1000 });
    } while (await sleep(pauseMs, signal));
  } catch (error) {
    if (!signal.aborted) throw error;
  }
  if (signal.aborted) {
    log.info("[shutdown] stopping on {signal}; journal kept as {mode}, nothing undone", {
      signal: String(signal.reason),
      mode: journal.mode,
      containers: journal.containers.length,
    });
    return ExitCode.Ok;
  }
  // A timer unit must not report success for a round that could not protect the host.
  return options.once && unprotected ? SentryExitCode.DockerUnavailable : ExitCode.Ok;
}

/**
 * One reconcile under the journal's lock: write a journal the disk refused before, observe Docker,
 * report what no journal accounts for, plan towards the verdict and run the steps.
 */
async function reconcile(context: ReconcileContext, verdict: Verdict): Promise<ReconcileOutcome> {
  const { deps, actuator, warned } = context;
  const { log, options, signal } = deps;
  const journal = await deps.journal.load();
  if (deps.journal.unsaved && await saveOrCarryOn(journal, actuator)) {
    log.info("[journal] written again: {path}", { path: deps.journal.path });
  }
  const unchanged = { journal, unprotected: false, failedCalls: 0, wentOffline: false, handedBack: false };
  let observation: Observation;
  try {
    observation = await deps.docker.observe(options.agentContainer);
  } catch (error) {
    if (signal.aborted) return unchanged;
    log.error("[docker] cannot read containers, retried on the next probe: {detail}", errorFields(error));
    // Online with the region answering, only the search for leftovers was missed: nothing needed protecting.
    return { ...unchanged, failedCalls: 1, unprotected: journal.mode !== "online" || verdict === "down" };
  }
  if (observation.agent === undefined && !warned.agentMissing) {
    log.warning("[docker] no container named {agent}: nothing to pause", { agent: options.agentContainer });
  }
  warned.agentMissing = observation.agent === undefined;
  const leftovers = leftoversOf(journal, observation);
  reportLeftovers(log, leftovers, warned);

  const before = journal.mode;
  const steps = context.machine.step(momentNow(), { journal, verdict, observation });
  if (before === "online" && steps[0]?.title === ADOPT_LEFTOVERS) {
    log.warning("[takeover] adopting {count} containers left on on-failure: handing them back to the ECS agent", {
      count: leftovers.containers.length,
      containers: names(leftovers.containers),
      strategy: options.machine.strategy,
    });
  } else if (before === "online" && steps.length > 0) {
    log.info("[ecs-offline] ecs unreachable, configuring container restart policy..");
    for (const c of observation.containers.filter((c) => c.awslogsBlocking)) {
      log.warning(
        "[ecs-offline] {container} logs through awslogs in blocking mode: Docker cannot restart it while " +
          "CloudWatch Logs is unreachable (it fails with exit 128); set mode non-blocking in its logConfiguration",
        { container: c.name, cluster: c.cluster, id: c.id },
      );
    }
  } else if (before === "offline" && verdict === "up") {
    log.info("[ecs-online] ecs is reachable..", { strategy: options.machine.strategy });
  }
  const outcome = await runSteps(steps, journal, actuator);
  const wentOffline = outcome.journal.mode === "offline" && before === "online";
  const handedBack = outcome.finished && steps.some((s) => s.title === HAND_BACK_COMPLETE);
  if (handedBack) {
    log.info("[ecs-online] hand-back complete, the ECS agent is in charge again");
  }
  if (outcome.journal.mode === "awaiting-resume" && before !== "awaiting-resume") {
    logResumeHint(log, deps.resumeCommand);
  }
  const after = handedBack ? { containers: [], agentPaused: false } : leftovers;
  return {
    journal: outcome.journal,
    findings: {
      leftovers: { containers: names(after.containers), agentPaused: after.agentPaused },
      awslogsBlocking: names(observation.containers.filter((c) => c.awslogsBlocking)),
    },
    unprotected: outcome.failedCalls > 0,
    failedCalls: outcome.failedCalls,
    wentOffline,
    handedBack,
  };
}

function names(containers: ReadonlyArray<{ readonly name: string }>): string[] {
  return containers.map((c) => c.name).sort();
}

/**
 * Leftover containers are warned about on every probe until adopted; a paused agent with nothing else
 * of a sentry's in sight (an operator's pause, left alone) once each time it is found so.
 */
function reportLeftovers(log: Logger, leftovers: Leftovers, warned: ReconcileContext["warned"]): void {
  if (leftovers.containers.length > 0) {
    log.warning(
      "[takeover] found changes no journal accounts for (eINS stopped mid-outage, or a lost journal): " +
        "{count} ECS containers on on-failure; recorded and handed back to the ECS agent once the region answers",
      {
        count: leftovers.containers.length,
        containers: names(leftovers.containers),
        agentPaused: leftovers.agentPaused,
      },
    );
  }
  const operatorPause = leftovers.agentPaused && leftovers.containers.length === 0;
  if (operatorPause && !warned.operatorPause) {
    log.warning(
      "[takeover] the ECS agent is paused and no sentry change is in sight: left alone as an operator's pause " +
        "(docker unpause it if nobody paused it on purpose)",
    );
  }
  warned.operatorPause = operatorPause;
}

/** Temp files of a journal or status write that was killed mid-way. */
async function removeStaleTemps(deps: SentryDeps): Promise<void> {
  if (deps.options.dryRun) return;
  // A folder that cannot be cleaned (read-only, no permission) is only logged: it must not keep the sentry from
  // protecting. Not under the journal's lock: a start must not wait for a `resume` holding it.
  for (const file of [deps.journal.path, ...(deps.statusFile ? [deps.statusFile] : [])]) {
    try {
      for (const removed of await removeStaleTempFiles(file)) {
        deps.log.info("[startup] removed a stale temp file: {path}", { path: removed });
      }
    } catch (error) {
      deps.log.warning("[startup] cannot remove stale temp files beside {path}: {detail}", {
        path: file,
        detail: (error as Error).message,
      });
    }
  }
}

function remember(memory: ProbeMemory, result: ProbeResult): ProbeMemory {
  return {
    counters: countProbe(memory.counters, result.ok),
    lastProbe: {
      reachable: result.ok,
      latencyMs: Math.round(result.latencyMs),
      at: Date.now(),
      ...(result.ok ? {} : { reason: `${result.reason}: ${result.detail}` }),
    },
  };
}

function logProbe(log: Logger, region: string, result: ProbeResult, counters: ProbeCounters): void {
  if (result.ok) {
    log.info("[connect] ecs at {region} is available..", {
      region,
      status: result.status,
      latencyMs: Math.round(result.latencyMs),
    });
  } else {
    log.warning("[connect] ecs at {region} unreachable ({reason}): {detail}", {
      region,
      reason: result.reason,
      detail: result.detail,
      latencyMs: Math.round(result.latencyMs),
      consecutiveFailures: counters.consecutiveFailures,
    });
  }
}

function logResumeHint(log: Logger, command: string): void {
  log.warning(
    "[ecs-online] containers were restarted during the outage; the ECS agent stays paused. Inspect them, then run: {command}",
    { command },
  );
}

/** The status file and the metrics file, each on its own: one that cannot be written does not stop the other. */
async function record(
  deps: SentryDeps,
  state: { journal: Journal; memory: ProbeMemory; findings?: HostFindings; counters: RunCounters },
): Promise<void> {
  const { options, log } = deps;
  const { journal, memory, findings, counters } = state;
  const write = async (path: string, what: string, work: () => Promise<void>) => {
    try {
      await work();
    } catch (error) {
      log.error(`[end] cannot write the ${what} file {path}: {detail}`, { path, ...errorFields(error) });
    }
  };
  if (deps.statusFile) {
    const now = momentNow();
    await write(deps.statusFile, "status", () =>
      writeStatus(deps.statusFile!, {
        role: "network-sentry",
        pid: Deno.pid,
        updatedAt: now.wallMs,
        state: journal.mode,
        // When it was written on the boot clock: what a later process resumes streaks by.
        details: { ...memory, endpoint: deps.endpoint, ...findings, bootClock: now.bootClock },
      }));
  }
  if (options.metricsFile) {
    const snapshot: SentryMetrics = {
      mode: journal.mode,
      consecutiveFailures: memory.counters.consecutiveFailures,
      lastProbe: memory.lastProbe,
      transitions: counters.transitions,
      containersKeptAlive: journal.mode === "offline" ? journal.containers.length : 0,
      dockerErrors: counters.dockerErrors,
      leftoverContainers: findings?.leftovers.containers.length ?? 0,
      leftoverAgentPaused: findings?.leftovers.agentPaused ?? false,
      awslogsBlocking: findings?.awslogsBlocking.length ?? 0,
    };
    // A dry run changes nothing on the host, not even the metrics file.
    if (options.dryRun) {
      log.info("[end] dry run, would write the metrics file {path}", { path: options.metricsFile, ...snapshot });
    } else {
      await write(options.metricsFile, "metrics", () => writeMetrics(options.metricsFile!, snapshot));
    }
  }
}
