/**
 * The watch loop: carries out what the {@link DrainMachine} asks for (DescribeTargetHealth per target
 * group, connection counts), feeds back what came of it, and logs every change. Calls run concurrently
 * with the timers, so a slow AWS answer never delays the end of a drain. Every time it hands the
 * machine is on {@link monotonicNow}: a wall-clock step neither ends a drain nor pauses polling.
 * @module
 */
import type { ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { monotonicNow } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { PlannedTarget } from "./discovery.ts";
import {
  type Action,
  DrainMachine,
  type DrainMode,
  type Finish,
  isNotRegistered,
  type MachineEvent,
  type MachineStatus,
  type Observation,
  type Phase,
  type TargetChange,
  targetKey,
} from "./machine.ts";
import { type PaceChange, PollPacing } from "./pacing.ts";
import { describeTargetHealth, pollError } from "./target_health.ts";

export interface WatchOptions {
  readonly targets: readonly PlannedTarget[];
  readonly elbv2: ElasticLoadBalancingV2Client;
  /** The mode in force (see `effectiveDrainMode`). */
  readonly drainMode: DrainMode;
  /** Counts ESTABLISHED connections on the given ports; needed in `connections` mode. */
  readonly countConnections?: (ports: ReadonlySet<number>) => Promise<number>;
  readonly pollIntervalMs: number;
  readonly deregistrationWaitMs: number;
  readonly quietPeriodMs: number;
  /** See `MachineOptions.drainFloorMs`. */
  readonly drainFloorMs?: number;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Called whenever something changed or a poll round completed, to keep the status file current. */
  readonly onStatus?: (status: MachineStatus) => Promise<void>;
  readonly random?: () => number;
}

export type WatchOutcome =
  | { readonly kind: "finished"; readonly finish: Finish }
  /** The signal aborted; `phase` is where the watch was. */
  | { readonly kind: "stopped"; readonly phase: Phase };

/** Runs until the machine finishes (exit 0) or `signal` aborts. Nothing else ends it. */
export async function watchTargets(options: WatchOptions): Promise<WatchOutcome> {
  const machine = new DrainMachine({
    targets: options.targets,
    pollIntervalMs: options.pollIntervalMs,
    deregistrationWaitMs: options.deregistrationWaitMs,
    drainMode: options.drainMode,
    quietPeriodMs: options.quietPeriodMs,
    drainFloorMs: options.drainFloorMs,
    startedAt: monotonicNow(),
    random: options.random,
  });
  const pacing = new PollPacing(options.pollIntervalMs);
  const inbox = new Inbox<Observation>();
  const describe = new EventLog(options);
  // Calls still in flight when the watch ends are cancelled with it.
  const ended = new AbortController();
  const signal = AbortSignal.any([options.signal, ended.signal]);
  let observations: Observation[] = [];
  let lastReported: MachineStatus | undefined;
  try {
    for (;;) {
      // The pace first, so the machine schedules the polls (and a quick retry) of this step at it.
      const paced = pacing.observe(observations);
      machine.setPollInterval(pacing.intervalMs);
      if (paced) describe.pace(paced);
      const step = machine.step(monotonicNow(), observations);
      for (const event of step.events) describe.log(event);
      const status = machine.status();
      // Every completed poll is reported: the health check judges the watch by when polls last completed.
      if (
        step.events.length > 0 || lastReported === undefined ||
        status.lastPollCompletedAt !== lastReported.lastPollCompletedAt
      ) {
        lastReported = status;
        await options.onStatus?.(status);
      }
      if (step.finished) return { kind: "finished", finish: step.finished };
      for (const action of step.actions) carryOut(action, options, inbox, signal);
      observations = await inbox.take(step.wakeAt - monotonicNow(), options.signal);
      if (options.signal.aborted) return { kind: "stopped", phase: machine.phase };
    }
  } finally {
    ended.abort();
  }
}

function carryOut(action: Action, options: WatchOptions, inbox: Inbox<Observation>, signal: AbortSignal): void {
  if (action.kind === "poll") {
    const targetGroupArn = action.targetGroupArn;
    const targets = options.targets.filter((t) => t.targetGroupArn === targetGroupArn);
    describeTargetHealth(options.elbv2, targetGroupArn, targets, signal).then(
      (readings) => inbox.push({ kind: "target-health", at: monotonicNow(), targetGroupArn, readings }),
      (error) => {
        if (!signal.aborted) {
          inbox.push({ kind: "poll-failed", at: monotonicNow(), targetGroupArn, error: pollError(error) });
        }
      },
    );
    return;
  }
  const ports = new Set(options.targets.map((t) => t.port));
  const count = options.countConnections;
  if (!count) {
    inbox.push({ kind: "connections-unavailable", at: monotonicNow(), message: "no connection table is open" });
    return;
  }
  count(ports).then(
    (established) => inbox.push({ kind: "connections", at: monotonicNow(), established }),
    (error) => inbox.push({ kind: "connections-unavailable", at: monotonicNow(), message: (error as Error).message }),
  );
}

/** One log line per machine event, with the fields operators search for. */
class EventLog {
  readonly #names: Map<string, string>;

  constructor(readonly options: WatchOptions) {
    this.#names = new Map(options.targets.map((t) => [t.targetGroupArn, t.targetGroupName]));
  }

  #group(arn: string): string {
    return this.#names.get(arn) ?? arn;
  }

  #change(change: TargetChange) {
    return {
      targetGroup: this.#group(change.target.targetGroupArn),
      target: targetKey(change.target),
      state: change.state,
      previousState: change.previousState,
      reason: change.reason,
      description: change.description,
    };
  }

  /** One line per change of pace, not per poll: every slow-down, each halving on the way back, the return. */
  pace(change: PaceChange): void {
    const fields = {
      intervalSeconds: Math.round(change.intervalMs) / 1000,
      previousIntervalSeconds: Math.round(change.previousIntervalMs) / 1000,
      configuredSeconds: this.options.pollIntervalMs / 1000,
      error: change.error,
    };
    switch (change.kind) {
      case "slowed":
        this.options.log.warning(
          "polling every {intervalSeconds} s instead of {previousIntervalSeconds} s: AWS failed a call ({error}); " +
            "the account's ELB API budget is short or ELB is under strain. A drain is still acted on at the first answer",
          fields,
        );
        return;
      case "recovering":
        this.options.log.info("polling every {intervalSeconds} s, on the way back to {configuredSeconds} s", fields);
        return;
      case "restored":
        this.options.log.info("polling every {intervalSeconds} s again (POLLING_FREQUENCY)", fields);
        return;
    }
  }

  log(event: MachineEvent): void {
    const log = this.options.log;
    switch (event.kind) {
      case "target-changed":
        log.info(
          `target {target} in {targetGroup} is ${isNotRegistered(event) ? "not registered" : "{state}"}`,
          this.#change(event),
        );
        return;
      case "drain-started":
        log.info(
          "drain started: target {target} in {targetGroup} is {state}; {mode} mode, exiting within {waitSeconds} s",
          {
            ...this.#change(event),
            mode: event.mode,
            waitSeconds: inSeconds(event.waitMs),
            floorSeconds: inSeconds(event.floorMs),
            quietPeriodSeconds: inSeconds(event.quietPeriodMs),
          },
        );
        return;
      case "draining-before-registration":
        log.warning(
          "target {target} in {targetGroup} is draining before this task was seen registered: the draining " +
            "target is the task that had this IP before, not this one; waiting for this task's registration",
          this.#change(event),
        );
        return;
      case "drain-cancelled":
        log.warning("drain cancelled: target {target} in {targetGroup} is {state} again after {drainedSeconds} s", {
          ...this.#change(event),
          drainedSeconds: inSeconds(event.drainedMs),
        });
        return;
      case "poll-failed": {
        const fields = {
          targetGroup: this.#group(event.targetGroupArn),
          error: event.error.code,
          detail: event.error.message,
          transient: event.error.transient,
          failures: event.failures,
          retryInSeconds: inSeconds(event.retryInMs),
        };
        const text = "DescribeTargetHealth for {targetGroup} failed ({error}), retrying in {retryInSeconds} s";
        if (event.changed) log.warning(text, fields);
        else log.debug(text, fields);
        return;
      }
      case "poll-recovered":
        log.info("DescribeTargetHealth for {targetGroup} answers again after {failures} failed calls", {
          targetGroup: this.#group(event.targetGroupArn),
          failures: event.failures,
        });
        return;
      case "connections-changed":
        log.info("{established} established connections on the target ports", {
          established: event.established,
          previous: event.previous,
          ports: [...new Set(this.options.targets.map((t) => t.port))],
        });
        return;
      case "connections-unavailable":
        log.warning("cannot count connections ({detail}): waiting the full DEREGISTRATION_WAIT instead", {
          detail: event.message,
        });
        return;
      case "finished":
        log.info("finished: {reason} after {waitedSeconds} s of draining, exit 0", {
          targetGroup: this.#group(event.target.targetGroupArn),
          target: targetKey(event.target),
          reason: event.reason,
          waitedSeconds: inSeconds(event.waitedMs),
        });
        return;
    }
  }
}

/** The one unit change of the log: durations are milliseconds everywhere else, seconds in log fields. */
function inSeconds<T extends number | undefined>(ms: T): T {
  return (ms === undefined ? undefined : Math.round(ms) / 1000) as T;
}

/** Observations from calls in flight; `take` waits for the first one, a deadline, or an abort. */
class Inbox<T> {
  readonly #items: T[] = [];
  #wake?: () => void;

  push(item: T): void {
    this.#items.push(item);
    this.#wake?.();
  }

  async take(waitMs: number, signal: AbortSignal): Promise<T[]> {
    if (this.#items.length === 0 && waitMs > 0 && !signal.aborted) {
      await new Promise<void>((resolve) => {
        // An infinite wait means "until something arrives": setTimeout would fire at once on Infinity.
        const timer = Number.isFinite(waitMs) ? setTimeout(done, waitMs) : undefined;
        function done() {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          resolve();
        }
        this.#wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
      this.#wake = undefined;
    }
    return this.#items.splice(0);
  }
}
