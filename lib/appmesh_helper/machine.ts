/**
 * The shutdown stage as a pure state machine: the driver feeds it the time now, in milliseconds on a
 * monotonic clock that a wall-clock step does not move, and what it observed, `step(now, observation)`;
 * it answers with the one action to take next. No I/O and no clock of its own, so every path (app gone, Envoy down or restarted, connections that never
 * close) is tested without waiting. A leaf of the import graph.
 *
 * Timeline, from the first SIGTERM/SIGINT at `t0`:
 * - app health configured and gone (connection refused, or no answer in time twice in a row): exit at
 *   once, nothing to drain. Any other failure (DNS, TLS, reset) proves nothing, so the drain goes on;
 * - `t0 + drainDelay`: fail Envoy's health check (and, in connections mode, drain its inbound listeners);
 * - from then on Envoy is read every poll interval: an Envoy LIVE again (restarted by its agent, or its
 *   health check reset) or that started again since the previous read is failed again;
 * - fixed mode: exit at the deadline `t0 + drainDelay + drainTimeout`;
 * - connections mode: exit once the ingress listener has been quiet (no connection open, none accepted)
 *   for the quiet period, or at the deadline, whichever comes first. If Envoy did not take the fail call,
 *   downstreams were never told; if the listener is not accepting (Envoy stopped it, or its stats are
 *   gone), refused connections never show in its counters: a lull proves nothing then, so the drain
 *   holds to the deadline as in fixed mode.
 * @module
 */

/** The drain modes, named once: the setting DRAIN_MODE takes its choices from here. */
export const DRAIN_MODES = ["fixed", "connections"] as const;
export type DrainMode = typeof DRAIN_MODES[number];

export interface ShutdownPlan {
  readonly drainDelayMs: number;
  readonly drainTimeoutMs: number;
  readonly mode: DrainMode;
  readonly quietPeriodMs: number;
  /** How often Envoy is read once its health check has been failed (for restarts, and connections). */
  readonly pollIntervalMs: number;
  /** Whether an app health check is configured (only then can the app be found gone). */
  readonly appCheck: boolean;
}

/**
 * How the app's health check went: any HTTP answer (even a 5xx), the connection refused, no answer
 * within the timeout, or another failure (DNS, TLS, reset) that says nothing about whether it is there.
 */
export type AppCheckResult = "answered" | "refused" | "timed-out" | "failed";

/** One read of the ingress listener's counters, summed over its addresses. */
export interface IngressCount {
  /** Connections open now (`downstream_cx_active`). */
  readonly active: number;
  /**
   * Connections accepted since Envoy started (`downstream_cx_total`). A connection that opened and
   * closed between two reads never shows in `active`, but it moves this.
   */
  readonly accepted: number;
}

/** One read of Envoy's stats during the drain, all figures from the same moment. */
export interface EnvoyReading {
  /** `server.state` is LIVE: its health check passes (a restarted Envoy, or one whose fail was undone). */
  readonly live: boolean;
  /**
   * When this Envoy process started, on the host's wall clock, as closely as its uptime (whole seconds) and
   * the read's own duration tell: no earlier than `earliestMs`, no later than `latestMs`. Envoy computes its
   * uptime on the wall clock (source/server/admin/server_info_handler.cc), so a step of the host's clock moves
   * its uptime and the helper's reading of the clock alike and leaves its start where it was; a restart by its
   * agent moves the start later. A step during the read itself makes the bounds wider, or cross (then they
   * bound nothing).
   */
  readonly started: { readonly earliestMs: number; readonly latestMs: number };
  /** `listener_manager.listener_stopped`: listeners Envoy has stopped (they refuse new connections). */
  readonly listenersStopped: number;
  /** The ingress listener's counters; `undefined` when Envoy has no stats for it. */
  readonly ingress: IngressCount | undefined;
}

/** What the driver saw since the last action. */
export type Observation =
  | { readonly kind: "app-checked"; readonly result: AppCheckResult }
  | { readonly kind: "waited" }
  | { readonly kind: "envoy-failed"; readonly accepted: boolean }
  /** `undefined`: Envoy did not answer (or not as Envoy does). */
  | { readonly kind: "envoy-read"; readonly reading: EnvoyReading | undefined };

export type WaitPurpose = "drain-delay" | "drain-timeout" | "poll";
export type ExitReason = "app-gone" | "drain-timeout" | "connections-drained";
/**
 * Why Envoy is (again) told to fail: the drain delay ended; it is LIVE again after it took the call (its agent
 * restarted it); or it never took the call and is LIVE now (it was down or refusing).
 */
export type FailCause = "drain-delay-over" | "envoy-restarted" | "envoy-not-yet-failed";
/** Why connections mode holds to the deadline although downstreams were told: the listener may refuse. */
export type HoldReason = "listener-stopped" | "listener-stats-gone";

export type Action =
  /** Ask the app's health check (once more after a check that timed out, to confirm it). */
  | { readonly kind: "check-app" }
  /** Sleep until `untilMs` (on the clock `step` is driven with), then report `waited`. */
  | { readonly kind: "wait"; readonly untilMs: number; readonly purpose: WaitPurpose }
  /** Fail Envoy's health check; give up on retries at `deadlineMs`. */
  | {
    readonly kind: "fail-envoy";
    readonly drainListeners: boolean;
    readonly deadlineMs: number;
    readonly cause: FailCause;
  }
  /** Read Envoy's stats; a read must not outlast `deadlineMs`. */
  | { readonly kind: "read-envoy"; readonly deadlineMs: number }
  | { readonly kind: "exit"; readonly reason: ExitReason };

type Phase =
  | "start"
  | "checking-app"
  | "confirming-app"
  | "delaying"
  | "failing"
  | "reading"
  | "polling"
  | "done";

export class ShutdownMachine {
  readonly startedAt: number;
  /** When the health check fail is due. */
  readonly failAt: number;
  /** The latest exit: `t0 + drainDelay + drainTimeout`. */
  readonly deadline: number;
  #phase: Phase = "start";
  /** Since when the listener has been quiet, and its accepted count then; `undefined` while not quiet. */
  #quiet: { readonly since: number; readonly accepted: number } | undefined;
  #lastCount: number | undefined;
  #envoyAccepted = false;
  #failCalls = 0;
  /** The latest Envoy process's start as the previous read bounded it. */
  #lastStart: EnvoyReading["started"] | undefined;
  /** `listener_stopped` at the first read after the latest fail call: a rise means Envoy stopped a listener. */
  #stoppedBefore: number | undefined;
  #holdReason: HoldReason | undefined;
  #restarts = 0;

  constructor(readonly plan: ShutdownPlan, now: number) {
    this.startedAt = now;
    this.failAt = now + plan.drainDelayMs;
    this.deadline = this.failAt + plan.drainTimeoutMs;
  }

  /** The last count of open connections, `undefined` before the first read or when it was unknown. */
  get connectionsLeft(): number | undefined {
    return this.#lastCount;
  }

  /** Whether Envoy accepted the latest health check failure. */
  get envoyAccepted(): boolean {
    return this.#envoyAccepted;
  }

  /** Why connections mode now holds to the deadline; `undefined` while a quiet listener may end the drain. */
  get holdReason(): HoldReason | undefined {
    return this.#holdReason;
  }

  /** How many times Envoy was found LIVE again or restarted mid-drain (and failed again). */
  get restarts(): number {
    return this.#restarts;
  }

  /** The first action, for the signal that started the shutdown. */
  start(): Action {
    this.#expect("start");
    if (this.plan.appCheck) return this.#to("checking-app", { kind: "check-app" });
    return this.#delay();
  }

  /** The next action, given the time now and what the previous action observed. */
  step(now: number, observation: Observation): Action {
    switch (observation.kind) {
      case "app-checked":
        return this.#afterAppCheck(observation.result);
      case "envoy-failed":
        this.#expect("failing");
        return this.#afterFail(observation.accepted, now);
      case "envoy-read":
        this.#expect("reading");
        return this.#afterRead(observation.reading, now);
      case "waited":
        return this.#afterWait(now);
    }
  }

  #afterAppCheck(result: AppCheckResult): Action {
    const confirming = this.#phase === "confirming-app";
    if (!confirming) this.#expect("checking-app");
    switch (result) {
      case "refused":
        return this.#exit("app-gone");
      case "timed-out":
        // One slow answer may be an app busy with its last requests: only a second one in a row means gone.
        return confirming ? this.#exit("app-gone") : this.#to("confirming-app", { kind: "check-app" });
      case "answered":
      case "failed":
        // A DNS, TLS or reset failure may hide an app that still serves: draining is the safe side.
        return this.#delay();
    }
  }

  #afterFail(accepted: boolean, now: number): Action {
    const first = this.#failCalls++ === 0;
    this.#envoyAccepted = accepted;
    this.#quiet = undefined;
    this.#stoppedBefore = undefined;
    this.#holdReason = undefined;
    if (now >= this.deadline) return this.#exit("drain-timeout");
    if (this.#countsConnections) return this.#to("reading", { kind: "read-envoy", deadlineMs: this.deadline });
    return this.#poll(now, first ? "drain-timeout" : "poll");
  }

  #afterWait(now: number): Action {
    switch (this.#phase) {
      case "delaying":
        return this.#fail("drain-delay-over");
      case "polling":
        if (now >= this.deadline) return this.#exit("drain-timeout");
        return this.#to("reading", { kind: "read-envoy", deadlineMs: this.deadline });
      default:
        throw new Error(`shutdown machine: "waited" is not expected in phase ${this.#phase}`);
    }
  }

  #afterRead(reading: EnvoyReading | undefined, now: number): Action {
    if (reading !== undefined) {
      // Bounds that cross were read across a step of the clock: they say nothing about the start.
      const bounded = reading.started.earliestMs <= reading.started.latestMs;
      // Started after the previous process certainly had: a new one (even one not yet LIVE).
      const startedAgain = bounded && this.#lastStart !== undefined &&
        reading.started.earliestMs > this.#lastStart.latestMs;
      if (bounded) this.#lastStart = reading.started;
      if (now < this.deadline && (startedAgain || (reading.live && this.#envoyAccepted))) {
        this.#restarts++;
        return this.#fail("envoy-restarted");
      }
      if (now < this.deadline && reading.live) return this.#fail("envoy-not-yet-failed");
    }
    if (!this.#countsConnections) {
      if (now >= this.deadline) return this.#exit("drain-timeout");
      return this.#poll(now, "poll");
    }
    this.#lastCount = reading?.ingress?.active;
    this.#trackAccepting(reading);
    this.#trackQuiet(reading?.ingress, now);
    if (this.#quiet !== undefined && now - this.#quiet.since >= this.plan.quietPeriodMs) {
      return this.#exit("connections-drained");
    }
    if (now >= this.deadline) return this.#exit("drain-timeout");
    return this.#poll(now, "poll");
  }

  /** Downstreams were told (connections mode, fail call taken): only then can a lull end the drain. */
  get #countsConnections(): boolean {
    return this.plan.mode === "connections" && this.#envoyAccepted;
  }

  /** A listener that stopped, or whose stats vanished, refuses connections its counters never see. */
  #trackAccepting(reading: EnvoyReading | undefined): void {
    if (reading === undefined || this.#holdReason !== undefined) return;
    this.#stoppedBefore ??= reading.listenersStopped;
    if (reading.listenersStopped > this.#stoppedBefore) this.#holdReason = "listener-stopped";
    else if (reading.ingress === undefined) this.#holdReason = "listener-stats-gone";
  }

  /**
   * Quiet means no connection open and none accepted since the quiet period began: under light traffic
   * after the fail call, each connection carries one request and closes (`Connection: close`), often
   * between two reads, so open connections alone would look quiet while requests still arrive. An
   * unknown count, or a listener that may be refusing, never proves quiet; anything but quiet restarts
   * the period.
   */
  #trackQuiet(count: IngressCount | undefined, now: number): void {
    if (count === undefined || count.active > 0 || this.#holdReason !== undefined) {
      this.#quiet = undefined;
    } else if (this.#quiet?.accepted !== count.accepted) {
      this.#quiet = { since: now, accepted: count.accepted };
    }
  }

  /** Sleeps until the next read, cut short so that the quiet period's end and the deadline land on time. */
  #poll(now: number, purpose: WaitPurpose): Action {
    const quietEnds = this.#quiet === undefined ? Infinity : this.#quiet.since + this.plan.quietPeriodMs;
    const untilMs = Math.min(now + this.plan.pollIntervalMs, quietEnds, this.deadline);
    return this.#to("polling", { kind: "wait", untilMs, purpose });
  }

  #fail(cause: FailCause): Action {
    return this.#to("failing", {
      kind: "fail-envoy",
      drainListeners: this.plan.mode === "connections",
      deadlineMs: this.deadline,
      cause,
    });
  }

  #delay(): Action {
    return this.#to("delaying", { kind: "wait", untilMs: this.failAt, purpose: "drain-delay" });
  }

  #exit(reason: ExitReason): Action {
    return this.#to("done", { kind: "exit", reason });
  }

  #to(phase: Phase, action: Action): Action {
    this.#phase = phase;
    return action;
  }

  #expect(phase: Phase): void {
    if (this.#phase !== phase) throw new Error(`shutdown machine: expected phase ${phase}, is in ${this.#phase}`);
  }
}
