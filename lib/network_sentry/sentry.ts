/**
 * The daemon loop: probe (the monitor), then, under the journal's lock, observe Docker, plan and act
 * (the actuator). Docker is only looked at while something of the sentry's is or must be in effect.
 * Nothing here decides; machine.ts does.
 * @module
 */
import { sleep } from "../clock.ts";
import type { Logger } from "../log.ts";
import { readStatus, writeStatus } from "../status_file.ts";
import { type DockerActions, runSteps } from "./actuator.ts";
import { type DockerHost, errorFields } from "./docker.ts";
import type { JournalStore } from "./journal.ts";
import {
  countProbe,
  type Journal,
  needsDocker,
  NO_PROBES,
  type Observation,
  plan,
  type ProbeCounters,
  type Thresholds,
  verdictOf,
} from "./machine.ts";
import { type SentryMetrics, writeMetrics } from "./metrics.ts";
import type { ProbeResult } from "./probe.ts";
import type { NetworkSentryConfig } from "./settings.ts";

export interface SentryDeps {
  readonly config: NetworkSentryConfig;
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
    readonly at: number;
    readonly reason?: string;
  };
}

/** The status file beside the journal: `state.json` -> `state.status.json`. */
export function statusFileFor(stateFile: string): string {
  return stateFile.replace(/(\.json)?$/, ".status.json");
}

/**
 * Probe streaks survive a restart when they are recent (within two probe periods), so thresholds also
 * hold across `--once` runs from a timer; an older streak says nothing about the network now.
 */
export function resumedCounters(
  saved: { updatedAt: number; details: Readonly<Record<string, unknown>> } | undefined,
  periodMs: number,
  now: number,
): ProbeCounters {
  if (!saved || now - saved.updatedAt > 2 * periodMs) return NO_PROBES;
  const counters = saved.details.counters as ProbeCounters | undefined;
  return typeof counters?.consecutiveFailures === "number" && typeof counters?.consecutiveSuccesses === "number"
    ? { consecutiveFailures: counters.consecutiveFailures, consecutiveSuccesses: counters.consecutiveSuccesses }
    : NO_PROBES;
}

/** Runs until shutdown (or one round with `--once`); returns the exit code. */
export async function runSentry(deps: SentryDeps): Promise<number> {
  const { config, log, signal } = deps;
  const thresholds: Thresholds = config;
  const periodMs = (config.interval + config.timeout) * 1000;
  const saved = deps.statusFile ? await readStatus(deps.statusFile).catch(() => undefined) : undefined;
  let memory: ProbeMemory = { counters: resumedCounters(saved, periodMs, Date.now()) };
  let journal = await deps.journal.load();
  const metrics = { transitions: { offline: 0, online: 0 }, dockerErrors: 0 };
  let agentMissingLogged = false;
  if (journal.mode !== "online") {
    log.info("[startup] resuming from the journal: {mode} since {since}, {count} containers recorded", {
      mode: journal.mode,
      since: journal.since === undefined ? "?" : new Date(journal.since).toISOString(),
      count: journal.containers.length,
      journal: deps.journal.path,
    });
    if (journal.mode === "awaiting-resume") logResumeHint(log, deps.resumeCommand);
  }

  const reconcile = async (verdict: ReturnType<typeof verdictOf>): Promise<void> => {
    journal = await deps.journal.load();
    if (!needsDocker(journal, verdict)) return;
    let observation: Observation;
    try {
      observation = await deps.docker.observe(config.agentContainer);
    } catch (error) {
      if (signal.aborted) return;
      metrics.dockerErrors++;
      log.error("[docker] cannot read containers, retried on the next probe: {detail}", errorFields(error));
      return;
    }
    if (observation.agent === undefined && !agentMissingLogged) {
      log.warning("[docker] no container named {agent}: nothing to pause", { agent: config.agentContainer });
    }
    agentMissingLogged = observation.agent === undefined;
    const before = journal.mode;
    const steps = plan({
      journal,
      verdict,
      observation,
      settings: {
        strategy: config.restartStrategy,
        retries: config.retries,
        cutoverTimeoutMs: config.cutoverTimeout * 1000,
        replacementSettleMs: config.cutoverSettle * 1000,
      },
      now: Date.now(),
    });
    if (before === "online" && steps.length > 0) {
      log.info("[ecs-offline] ecs unreachable, configuring container restart policy..");
    } else if (before === "offline" && verdict === "up") {
      log.info("[ecs-online] ecs is reachable..", { strategy: config.restartStrategy });
    }
    const outcome = await runSteps(steps, journal, {
      docker: deps.docker,
      journal: deps.journal,
      log,
      dryRun: config.dryRun,
      signal,
    });
    metrics.dockerErrors += outcome.failedCalls;
    if (outcome.journal.mode === "offline" && before === "online") metrics.transitions.offline++;
    if (outcome.journal.mode === "online" && before !== "online") {
      metrics.transitions.online++;
      log.info("[ecs-online] hand-back complete, the ECS agent is in charge again");
    }
    if (outcome.journal.mode === "awaiting-resume" && before !== "awaiting-resume") {
      logResumeHint(log, deps.resumeCommand);
    }
    journal = outcome.journal;
  };

  let pauseMs = 0;
  try {
    do {
      // Probes start every `interval` (not `interval` after the last one ended): a blackhole is then
      // noticed within failure-threshold x interval + timeout.
      const tickStarted = Date.now();
      // [begin], [connect] and [end] at INFO every round, as eINS logged them: existing log searches match.
      log.info("[begin] connectivity test..");
      const result = await deps.probe(signal);
      memory = remember(memory, result);
      logProbe(log, deps.region, result, memory.counters);
      await deps.journal.locked(() => reconcile(verdictOf(memory.counters, thresholds)), signal);
      await record(deps, journal, memory, metrics);
      if (config.once || signal.aborted) break;
      pauseMs = Math.max(0, config.interval * 1000 - (Date.now() - tickStarted));
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
  }
  return 0;
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

async function record(
  deps: SentryDeps,
  journal: Journal,
  memory: ProbeMemory,
  metrics: { transitions: SentryMetrics["transitions"]; dockerErrors: number },
): Promise<void> {
  const { config, log } = deps;
  try {
    if (deps.statusFile) {
      await writeStatus(deps.statusFile, {
        role: "network-sentry",
        pid: Deno.pid,
        updatedAt: Date.now(),
        state: journal.mode,
        details: { ...memory, endpoint: deps.endpoint },
      });
    }
    if (config.metricsFile) {
      const snapshot: SentryMetrics = {
        mode: journal.mode,
        consecutiveFailures: memory.counters.consecutiveFailures,
        lastProbe: memory.lastProbe,
        transitions: metrics.transitions,
        containersKeptAlive: journal.mode === "offline" ? journal.containers.length : 0,
        dockerErrors: metrics.dockerErrors,
      };
      // A dry run changes nothing on the host, not even the metrics file.
      if (config.dryRun) {
        log.info("[end] dry run, would write the metrics file {path}", { path: config.metricsFile, ...snapshot });
      } else {
        await writeMetrics(config.metricsFile, snapshot);
      }
    }
  } catch (error) {
    log.error("[end] cannot write the status or metrics file: {detail}", errorFields(error));
  }
}
