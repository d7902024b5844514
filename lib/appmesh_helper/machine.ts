/**
 * The shutdown stage as a pure state machine: the driver feeds it what it observed and the current
 * time, and it answers with the one action to take next. No I/O and no clock of its own, so every
 * path (app gone, Envoy down, connections that never close) is tested without waiting.
 *
 * Timeline, from the first SIGTERM/SIGINT at `t0`:
 * - app health configured and gone (connection refused, or no answer in time twice in a row): exit at
 *   once, nothing to drain. Any other failure (DNS, TLS, reset) proves nothing, so the drain goes on;
 * - `t0 + drainDelay`: fail Envoy's health check (and, in connections mode, drain its inbound listeners);
 * - fixed mode: exit at the deadline `t0 + drainDelay + drainTimeout`;
 * - connections mode: poll the ingress listener's counters and exit once it has been quiet (no connection
 *   open, none accepted) for the quiet period, or at the deadline, whichever comes first. If Envoy did
 *   not take the fail call, downstreams were never told, so the drain waits for the deadline as in fixed mode.
 * @module
 */

export type DrainMode = "fixed" | "connections";

export interface ShutdownPlan {
  readonly drainDelayMs: number;
  readonly drainTimeoutMs: number;
  readonly mode: DrainMode;
  readonly quietPeriodMs: number;
  /** How often the connection count is read in connections mode. */
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

/** What the driver saw since the last action. */
export type Observation =
  | { readonly kind: "app-checked"; readonly result: AppCheckResult }
  | { readonly kind: "waited" }
  | { readonly kind: "envoy-failed"; readonly accepted: boolean }
  /** `undefined`: unknown (Envoy did not answer, or has no such listener). */
  | { readonly kind: "connections-counted"; readonly count: IngressCount | undefined };

export type WaitPurpose = "drain-delay" | "drain-timeout" | "poll";
export type ExitReason = "app-gone" | "drain-timeout" | "connections-drained";

export type Action =
  /** Ask the app's health check (once more after a check that timed out, to confirm it). */
  | { readonly kind: "check-app" }
  /** Sleep until the epoch-ms `untilMs`, then report `waited`. */
  | { readonly kind: "wait"; readonly untilMs: number; readonly purpose: WaitPurpose }
  /** Fail Envoy's health check; give up on retries at `deadlineMs`. */
  | { readonly kind: "fail-envoy"; readonly drainListeners: boolean; readonly deadlineMs: number }
  /** Read the ingress connection count; a read must not outlast `deadlineMs`. */
  | { readonly kind: "count-connections"; readonly deadlineMs: number }
  | { readonly kind: "exit"; readonly reason: ExitReason };

type Phase =
  | "start"
  | "checking-app"
  | "confirming-app"
  | "delaying"
  | "failing"
  | "holding"
  | "counting"
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

  constructor(readonly plan: ShutdownPlan, now: number) {
    this.startedAt = now;
    this.failAt = now + plan.drainDelayMs;
    this.deadline = this.failAt + plan.drainTimeoutMs;
  }

  /** The last count of open connections, `undefined` before the first read or when it was unknown. */
  get connectionsLeft(): number | undefined {
    return this.#lastCount;
  }

  /** Whether Envoy accepted the health check failure. */
  get envoyAccepted(): boolean {
    return this.#envoyAccepted;
  }

  /** The first action, for the signal that started the shutdown. */
  start(): Action {
    this.#expect("start");
    if (this.plan.appCheck) return this.#to("checking-app", { kind: "check-app" });
    return this.#delay();
  }

  next(observation: Observation, now: number): Action {
    switch (observation.kind) {
      case "app-checked":
        return this.#afterAppCheck(observation.result);
      case "envoy-failed":
        this.#expect("failing");
        this.#envoyAccepted = observation.accepted;
        // Downstreams that were never told keep sending: a lull in connections proves nothing then.
        if (this.plan.mode === "fixed" || !observation.accepted) {
          return this.#to("holding", { kind: "wait", untilMs: this.deadline, purpose: "drain-timeout" });
        }
        return this.#countOrExit(now);
      case "connections-counted":
        this.#expect("counting");
        return this.#afterCount(observation.count, now);
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

  #afterWait(now: number): Action {
    switch (this.#phase) {
      case "delaying":
        return this.#to("failing", {
          kind: "fail-envoy",
          drainListeners: this.plan.mode === "connections",
          deadlineMs: this.deadline,
        });
      case "holding":
        return this.#exit("drain-timeout");
      case "polling":
        return this.#countOrExit(now);
      default:
        throw new Error(`shutdown machine: "waited" is not expected in phase ${this.#phase}`);
    }
  }

  #afterCount(count: IngressCount | undefined, now: number): Action {
    this.#lastCount = count?.active;
    this.#trackQuiet(count, now);
    if (this.#quiet !== undefined && now - this.#quiet.since >= this.plan.quietPeriodMs) {
      return this.#exit("connections-drained");
    }
    if (now >= this.deadline) return this.#exit("drain-timeout");
    const quietEnds = this.#quiet === undefined ? Infinity : this.#quiet.since + this.plan.quietPeriodMs;
    const untilMs = Math.min(now + this.plan.pollIntervalMs, quietEnds, this.deadline);
    return this.#to("polling", { kind: "wait", untilMs, purpose: "poll" });
  }

  /**
   * Quiet means no connection open and none accepted since the quiet period began: under light traffic
   * after the fail call, each connection carries one request and closes (`Connection: close`), often
   * between two reads, so open connections alone would look quiet while requests still arrive. An
   * unknown count never proves quiet, and anything but quiet restarts the period.
   */
  #trackQuiet(count: IngressCount | undefined, now: number): void {
    if (count === undefined || count.active > 0) {
      this.#quiet = undefined;
    } else if (this.#quiet?.accepted !== count.accepted) {
      this.#quiet = { since: now, accepted: count.accepted };
    }
  }

  #countOrExit(now: number): Action {
    if (now >= this.deadline) return this.#exit("drain-timeout");
    return this.#to("counting", { kind: "count-connections", deadlineMs: this.deadline });
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
