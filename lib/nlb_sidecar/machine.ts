/**
 * Every decision the nlb-sidecar makes, with no I/O: what it has observed (target health answers, failed
 * polls, connection counts) and the time go in; what to do next (poll a target group, count
 * connections, finish) and what changed come out. The watch loop only carries these out, so the
 * decisions are tested directly, without AWS or timers.
 *
 * The rules: a target is this task's once the sidecar has seen it registered and not draining (in
 * awsvpc mode a new task may get the IP of a stopped task whose target is still draining, and the first
 * answers are that task's). A `draining` target of this task starts the drain; the drain is cancelled if
 * the target turns healthy again. A target of this task that now answers `unused`/`Target.NotRegistered`
 * is gone; once every target is gone the task has left the load balancers and the sidecar finishes at
 * once. `fixed` drains finish after the deregistration wait; `connections` drains finish as soon as no
 * connection has been seen for the quiet period counted from the drain floor on, or at the cap (never
 * before the floor). Failed polls never finish anything: the first failure of a streak is retried once,
 * soon; after that the group keeps its regular interval, so throttling never makes the sidecar call more
 * often.
 * @module
 */

/** `fixed`: wait the deregistration wait; `connections`: finish once no connection is left. */
export const DRAIN_MODES = ["fixed", "connections"] as const;
export type DrainMode = typeof DRAIN_MODES[number];

/** One target of this task in one target group, as DescribeTargetHealth names it. */
export interface WatchedTarget {
  readonly targetGroupArn: string;
  readonly id: string;
  readonly port: number;
}

export interface TargetHealthReading {
  readonly id: string;
  readonly port: number;
  readonly state: string;
  readonly reason?: string;
  readonly description?: string;
}

export interface PollError {
  readonly code: string;
  readonly message: string;
  readonly transient: boolean;
}

export interface PollFailure {
  readonly targetGroupArn: string;
  readonly code: string;
  readonly transient: boolean;
  readonly at: number;
}

export type Observation =
  | {
    readonly kind: "target-health";
    readonly at: number;
    readonly targetGroupArn: string;
    readonly readings: readonly TargetHealthReading[];
  }
  | { readonly kind: "poll-failed"; readonly at: number; readonly targetGroupArn: string; readonly error: PollError }
  | { readonly kind: "connections"; readonly at: number; readonly established: number }
  /** Connections could not be counted: the drain falls back to the fixed wait. */
  | { readonly kind: "connections-unavailable"; readonly at: number; readonly message: string };

export type Action =
  | { readonly kind: "poll"; readonly targetGroupArn: string }
  | { readonly kind: "count-connections" };

export type FinishReason = "deregistered" | "drain-wait-elapsed" | "connections-quiet";

export interface Finish {
  readonly reason: FinishReason;
  /** Since the drain started; 0 when the targets were gone before any drain was seen. */
  readonly waitedMs: number;
}

/** A target's new state as DescribeTargetHealth reported it. */
export interface TargetChange {
  readonly target: WatchedTarget;
  readonly state: string;
  readonly previousState?: string;
  readonly reason?: string;
  readonly description?: string;
}

export type MachineEvent =
  | ({ readonly kind: "target-changed" } & TargetChange)
  /** The change to `draining` that started the drain: one event, not a target-changed as well. */
  | ({
    readonly kind: "drain-started";
    readonly mode: DrainMode;
    /** From the drain start to its deadline. */
    readonly waitMs: number;
    /** `connections` mode: the drain lasts at least this long, and its quiet period starts after it. */
    readonly floorMs?: number;
    /** `connections` mode: how long no connection must be seen. */
    readonly quietPeriodMs?: number;
  } & TargetChange)
  /** A `draining` answer before the target was seen serving: the previous holder of a reused IP. */
  | ({ readonly kind: "draining-before-registration" } & TargetChange)
  /** The drain's target turned healthy again (registered anew): the drain is over, the watch goes on. */
  | ({ readonly kind: "drain-cancelled"; readonly drainedMs: number } & TargetChange)
  | {
    readonly kind: "poll-failed";
    readonly targetGroupArn: string;
    readonly error: PollError;
    /** Consecutive failures of this group, this one included. */
    readonly failures: number;
    /** First failure of a streak, or a different error than the one before. */
    readonly changed: boolean;
    readonly retryInMs: number;
  }
  | { readonly kind: "poll-recovered"; readonly targetGroupArn: string; readonly failures: number }
  | { readonly kind: "connections-changed"; readonly established: number; readonly previous?: number }
  | { readonly kind: "connections-unavailable"; readonly message: string }
  /** `target` is the one whose drain finished, or whose deregistration was the last one seen. */
  | ({ readonly kind: "finished"; readonly target: WatchedTarget } & Finish);

export interface Step {
  readonly events: readonly MachineEvent[];
  readonly actions: readonly Action[];
  /** When `step` next has something to do if nothing is observed before (epoch ms; Infinity: only observations). */
  readonly wakeAt: number;
  readonly finished?: Finish;
}

export type Phase = "watching" | "draining" | "finished";

export interface MachineStatus {
  readonly phase: Phase;
  /** When the watch started: polls are due from here on. */
  readonly watchStartedAt: number;
  /** Every target group has answered at or after this time; undefined until each has answered once. */
  readonly lastSuccessfulPollAt?: number;
  /** The latest poll of any group that completed, whatever came of it: the watch loop is running. */
  readonly lastPollCompletedAt?: number;
  /**
   * The latest poll that was answered or failed with a transient error: AWS can answer this sidecar's
   * calls once it has capacity again. Only permanent errors (access denied, target group not found) stop
   * this from advancing.
   */
  readonly lastPollWithoutPermanentErrorAt?: number;
  /** The most recent failed poll, for operators and the health check's reason. */
  readonly lastPollError?: PollFailure;
  readonly drainStartedAt?: number;
  readonly drainDeadline?: number;
  readonly targets: ReadonlyArray<WatchedTarget & { readonly state?: string; readonly reason?: string }>;
  /** The interval in force: the configured one, or slower while AWS throttles (see `setPollInterval`). */
  readonly pollIntervalMs: number;
}

export interface MachineOptions {
  readonly targets: readonly WatchedTarget[];
  readonly pollIntervalMs: number;
  readonly deregistrationWaitMs: number;
  /** The mode in force: `connections` only where connections can be counted (the caller decides). */
  readonly drainMode: DrainMode;
  readonly quietPeriodMs: number;
  /**
   * `connections` mode: a drain never finishes on quiet connections before this long (an NLB keeps
   * opening new connections for a while after the deregistration), and the deadline is never earlier.
   */
  readonly drainFloorMs?: number;
  readonly startedAt: number;
  readonly random?: () => number;
}

/** The reason ELB gives for a target that is not (or no longer) registered. */
const NOT_REGISTERED = "Target.NotRegistered";

const JITTER = 0.1;
/**
 * The one quick retry after the first failure of a streak comes this fraction of an interval later
 * (uniformly, so a fleet throttled together does not retry together): soon enough that a drain hidden
 * by one throttled call is still seen within two intervals, never at once.
 */
const QUICK_RETRY = { min: 0.1, max: 0.3 } as const;
/** Connections are counted at least this often, so the sidecar exits within a second of the quiet period. */
const MAX_CONNECTION_SAMPLE_MS = 1_000;
const MIN_CONNECTION_SAMPLE_MS = 50;

interface TargetRecord {
  readonly target: WatchedTarget;
  state?: string;
  reason?: string;
  /** Seen registered and not draining: from then on its `draining` and `unused` answers are this task's. */
  seenServing: boolean;
}

interface GroupRecord {
  nextPollAt: number;
  inFlight: boolean;
  failures: number;
  lastErrorCode?: string;
  lastAnswerAt?: number;
}

interface Drain {
  /** The target whose change to `draining` started the drain. */
  readonly target: WatchedTarget;
  readonly startedAt: number;
  readonly deadline: number;
  /** Counts before this time never start the quiet period. */
  readonly floorAt: number;
  /** First count of the current run of zero counts: the quiet period is measured from here. */
  quietSince?: number;
  established?: number;
  nextSampleAt: number;
  sampling: boolean;
}

export function targetKey(target: { readonly id: string; readonly port: number }): string {
  return `${target.id}:${target.port}`;
}

/** ELB's answer for a target that is not registered (any more): `unused` / `Target.NotRegistered`. */
export function isNotRegistered(health: { readonly state?: string; readonly reason?: string }): boolean {
  return health.state === "unused" && health.reason === NOT_REGISTERED;
}

export class DrainMachine {
  readonly #options: MachineOptions;
  readonly #random: () => number;
  readonly #targets = new Map<string, Map<string, TargetRecord>>();
  readonly #groups = new Map<string, GroupRecord>();
  readonly #sampleMs: number;
  #countingConnections: boolean;
  #drain?: Drain;
  #finished?: Finish;
  #lastPollCompletedAt?: number;
  #lastPollWithoutPermanentErrorAt?: number;
  #lastPollError?: PollFailure;
  #pollIntervalMs: number;

  constructor(options: MachineOptions) {
    if (options.targets.length === 0) throw new Error("DrainMachine needs at least one target");
    this.#options = options;
    this.#random = options.random ?? Math.random;
    this.#pollIntervalMs = options.pollIntervalMs;
    this.#countingConnections = options.drainMode === "connections";
    this.#sampleMs = Math.min(
      MAX_CONNECTION_SAMPLE_MS,
      Math.max(MIN_CONNECTION_SAMPLE_MS, options.quietPeriodMs / 4),
    );
    for (const target of options.targets) {
      let group = this.#targets.get(target.targetGroupArn);
      if (!group) {
        group = new Map();
        this.#targets.set(target.targetGroupArn, group);
        this.#groups.set(target.targetGroupArn, { nextPollAt: options.startedAt, inFlight: false, failures: 0 });
      }
      group.set(targetKey(target), { target, seenServing: false });
    }
  }

  get phase(): Phase {
    return this.#finished ? "finished" : this.#drain ? "draining" : "watching";
  }

  /** Applies what was observed since the last step, then says what is due at `now`. */
  step(now: number, observations: readonly Observation[] = []): Step {
    const events: MachineEvent[] = [];
    for (const observation of observations) {
      if (this.#finished) break;
      this.#observe(observation, events);
    }
    if (!this.#finished) this.#checkDeadline(now, events);
    if (this.#finished) return { events, actions: [], wakeAt: Infinity, finished: this.#finished };
    return { events, actions: this.#dueActions(now), wakeAt: this.#wakeAt() };
  }

  /** Polls scheduled from now on come this often (+-10%): the pace set by the watch loop's `PollPacing`. */
  setPollInterval(intervalMs: number): void {
    this.#pollIntervalMs = intervalMs;
  }

  status(): MachineStatus {
    const answers = [...this.#groups.values()].map((g) => g.lastAnswerAt);
    return {
      phase: this.phase,
      watchStartedAt: this.#options.startedAt,
      lastSuccessfulPollAt: answers.some((a) => a === undefined) ? undefined : Math.min(...answers as number[]),
      lastPollCompletedAt: this.#lastPollCompletedAt,
      lastPollWithoutPermanentErrorAt: this.#lastPollWithoutPermanentErrorAt,
      lastPollError: this.#lastPollError,
      drainStartedAt: this.#drain?.startedAt,
      drainDeadline: this.#drain?.deadline,
      targets: [...this.#targets.values()].flatMap((group) =>
        [...group.values()].map((r) => ({ ...r.target, state: r.state, reason: r.reason }))
      ),
      pollIntervalMs: this.#pollIntervalMs,
    };
  }

  #observe(observation: Observation, events: MachineEvent[]): void {
    switch (observation.kind) {
      case "target-health":
        return this.#observeHealth(observation, events);
      case "poll-failed":
        return this.#observePollFailure(observation, events);
      case "connections":
        return this.#observeConnections(observation.at, observation.established, events);
      case "connections-unavailable":
        this.#countingConnections = false;
        events.push({ kind: "connections-unavailable", message: observation.message });
    }
  }

  #observeHealth(
    observation: Extract<Observation, { kind: "target-health" }>,
    events: MachineEvent[],
  ): void {
    const group = this.#groups.get(observation.targetGroupArn);
    const targets = this.#targets.get(observation.targetGroupArn);
    if (!group || !targets) return;
    group.inFlight = false;
    group.lastAnswerAt = observation.at;
    this.#lastPollCompletedAt = observation.at;
    this.#lastPollWithoutPermanentErrorAt = observation.at;
    if (group.failures > 0) {
      events.push({ kind: "poll-recovered", targetGroupArn: observation.targetGroupArn, failures: group.failures });
      group.failures = 0;
      group.lastErrorCode = undefined;
    }
    let lastChanged: WatchedTarget | undefined;
    for (const reading of observation.readings) {
      const record = targets.get(targetKey(reading));
      if (!record || (record.state === reading.state && record.reason === reading.reason)) continue;
      const change: TargetChange = {
        target: record.target,
        state: reading.state,
        previousState: record.state,
        reason: reading.reason,
        description: reading.description,
      };
      record.state = reading.state;
      record.reason = reading.reason;
      lastChanged = record.target;
      const draining = reading.state === "draining";
      if (draining && !record.seenServing) events.push({ kind: "draining-before-registration", ...change });
      else if (draining && !this.#drain) this.#startDrain(observation.at, change, events);
      else if (reading.state === "healthy" && this.#drain?.target === record.target) {
        this.#cancelDrain(observation.at, change, events);
      } else events.push({ kind: "target-changed", ...change });
      if (!draining && !isNotRegistered(record)) record.seenServing = true;
    }
    if (lastChanged && this.#allGone()) this.#finish("deregistered", observation.at, lastChanged, events);
  }

  /** Every target has answered, none is registered any more, and at least one was seen serving before. */
  #allGone(): boolean {
    const records = [...this.#targets.values()].flatMap((group) => [...group.values()]);
    return records.every(isNotRegistered) && records.some((r) => r.seenServing);
  }

  #startDrain(at: number, change: TargetChange, events: MachineEvent[]): void {
    const { drainMode, deregistrationWaitMs, quietPeriodMs } = this.#options;
    const floorMs = drainMode === "connections" ? this.#options.drainFloorMs ?? 0 : 0;
    const waitMs = Math.max(deregistrationWaitMs, floorMs);
    this.#drain = {
      target: change.target,
      startedAt: at,
      deadline: at + waitMs,
      floorAt: at + floorMs,
      nextSampleAt: at,
      sampling: false,
    };
    events.push({
      kind: "drain-started",
      mode: drainMode,
      waitMs,
      ...(drainMode === "connections" ? { floorMs, quietPeriodMs } : {}),
      ...change,
    });
  }

  #cancelDrain(at: number, change: TargetChange, events: MachineEvent[]): void {
    const drainedMs = at - this.#drain!.startedAt;
    this.#drain = undefined;
    events.push({ kind: "drain-cancelled", drainedMs, ...change });
  }

  #observePollFailure(
    observation: Extract<Observation, { kind: "poll-failed" }>,
    events: MachineEvent[],
  ): void {
    const group = this.#groups.get(observation.targetGroupArn);
    if (!group) return;
    const { at, error } = observation;
    group.inFlight = false;
    group.failures++;
    const changed = group.failures === 1 || group.lastErrorCode !== error.code;
    group.lastErrorCode = error.code;
    this.#lastPollCompletedAt = at;
    if (error.transient) this.#lastPollWithoutPermanentErrorAt = at;
    this.#lastPollError = {
      targetGroupArn: observation.targetGroupArn,
      code: error.code,
      transient: error.transient,
      at,
    };
    // Only the first failure of a streak is retried early: retrying every failure early would double the
    // calls of a throttled sidecar and add to the account-wide throttling that caused them. A permanent
    // error cannot be fixed by asking again soon, so it keeps the regular interval too.
    if (error.transient && group.failures === 1) {
      const fraction = QUICK_RETRY.min + (QUICK_RETRY.max - QUICK_RETRY.min) * this.#random();
      group.nextPollAt = Math.min(group.nextPollAt, at + fraction * this.#pollIntervalMs);
    }
    events.push({
      kind: "poll-failed",
      targetGroupArn: observation.targetGroupArn,
      error,
      failures: group.failures,
      changed,
      retryInMs: Math.max(0, group.nextPollAt - at),
    });
  }

  #observeConnections(at: number, established: number, events: MachineEvent[]): void {
    const drain = this.#drain;
    if (!drain) return;
    drain.sampling = false;
    if (established !== drain.established) {
      events.push({ kind: "connections-changed", established, previous: drain.established });
      drain.established = established;
    }
    if (established > 0) {
      drain.quietSince = undefined;
      drain.nextSampleAt = at + this.#sampleMs;
      return;
    }
    if (at < drain.floorAt) {
      drain.nextSampleAt = Math.min(at + this.#sampleMs, drain.floorAt);
      return;
    }
    // Measured from the first count that saw no connection, never from the last that saw one: a
    // connection may have lasted until just before this count, so the quiet period is never cut short.
    drain.quietSince ??= at;
    const quietUntil = drain.quietSince + this.#options.quietPeriodMs;
    if (at >= quietUntil) {
      this.#finish("connections-quiet", at, drain.target, events);
      return;
    }
    drain.nextSampleAt = Math.min(at + this.#sampleMs, quietUntil);
  }

  #checkDeadline(now: number, events: MachineEvent[]): void {
    const drain = this.#drain;
    if (drain && now >= drain.deadline) this.#finish("drain-wait-elapsed", now, drain.target, events);
  }

  #finish(reason: FinishReason, at: number, target: WatchedTarget, events: MachineEvent[]): void {
    this.#finished = { reason, waitedMs: this.#drain ? at - this.#drain.startedAt : 0 };
    events.push({ kind: "finished", target, ...this.#finished });
  }

  #dueActions(now: number): Action[] {
    const actions: Action[] = [];
    for (const [targetGroupArn, group] of this.#groups) {
      if (group.inFlight || group.nextPollAt > now) continue;
      group.inFlight = true;
      group.nextPollAt = now + this.#pollIntervalMs * (1 - JITTER + 2 * JITTER * this.#random());
      actions.push({ kind: "poll", targetGroupArn });
    }
    const drain = this.#drain;
    if (this.#countingConnections && drain && !drain.sampling && drain.nextSampleAt <= now) {
      drain.sampling = true;
      actions.push({ kind: "count-connections" });
    }
    return actions;
  }

  #wakeAt(): number {
    let wakeAt = Infinity;
    for (const group of this.#groups.values()) if (!group.inFlight) wakeAt = Math.min(wakeAt, group.nextPollAt);
    const drain = this.#drain;
    if (drain) {
      wakeAt = Math.min(wakeAt, drain.deadline);
      if (this.#countingConnections && !drain.sampling) wakeAt = Math.min(wakeAt, drain.nextSampleAt);
    }
    return wakeAt;
  }
}

/** The load balancers the sidecar watches: their deregistration differs (see `DRAIN_MIN_WAIT_DEFAULTS`). */
export type LoadBalancerType = "network" | "application";

/** A target group's protocol tells its load balancer: HTTP and HTTPS only on an ALB, the others an NLB. */
export function loadBalancerType(protocol: string): LoadBalancerType {
  return protocol === "HTTP" || protocol === "HTTPS" ? "application" : "network";
}

/** What `connections` mode needs: the application's sockets in view, and connections to count. */
const CONNECTION_PROTOCOLS = new Set(["TCP", "TLS", "HTTP", "HTTPS"]);

/**
 * The drain mode in force for a task: `connections` falls back to `fixed` where the sidecar cannot see
 * the application's connections (bridge mode has a network namespace per container) or where targets
 * carry UDP; `fallback` says why.
 */
export function effectiveDrainMode(
  requested: DrainMode,
  task: { readonly networkMode: string; readonly targets: ReadonlyArray<{ readonly protocol: string }> },
): { readonly mode: DrainMode; readonly fallback?: string } {
  if (requested === "fixed") return { mode: "fixed" };
  if (task.networkMode !== "awsvpc" && task.networkMode !== "host") {
    return {
      mode: "fixed",
      fallback: `${task.networkMode} network mode: the sidecar cannot see the application's connections`,
    };
  }
  const other = task.targets.find((t) => !CONNECTION_PROTOCOLS.has(t.protocol));
  if (other) return { mode: "fixed", fallback: `a ${other.protocol} target group: only TCP connections are counted` };
  return { mode: "connections" };
}
