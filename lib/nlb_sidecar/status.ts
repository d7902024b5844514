/**
 * What the daemon tells its `health` subcommand through the status file, and the health rule. ECS runs
 * `health` as the essential container's healthCheck in an image with no shell, so the rule must be
 * answerable from the file alone, and an unhealthy verdict makes ECS replace the task.
 *
 * The rule therefore asks "is the sidecar doing its job?", not "did AWS answer lately?": a sidecar must
 * never take its application down because AWS hiccuped. Account-wide ELB throttling lasting minutes
 * would otherwise mark every task of every service unhealthy at once and make ECS replace the fleet.
 * Healthy while discovery is still within DISCOVERY_TIMEOUT, while polls keep completing with an answer
 * or a transient error, or while a drain is within its deadline. Unhealthy once discovery failed for
 * good, once the watch loop stalls, or once every poll has failed with a permanent error (access
 * denied, target group not found) for three polling intervals: states only a fix or a restart ends.
 * @module
 */
import { monotonicNow } from "../clock.ts";
import type { Logger } from "../log.ts";
import { readStatus, type Status, writeStatus } from "../status_file.ts";
import type { MachineStatus } from "./machine.ts";

export type SidecarState = "discovering" | "discovery-failed" | "watching" | "draining" | "finished";

/**
 * Every time in here is on {@link monotonicNow}: boot-time milliseconds, which the `health` process reads
 * on the same scale, so a wall-clock step between the two changes no age.
 */
export interface SidecarStatusDetails extends Partial<Omit<MachineStatus, "phase">> {
  readonly pollIntervalMs: number;
  /** How long one AWS call may take: a poll may complete this late without the loop being stuck. */
  readonly requestTimeoutMs: number;
  /** When discovery stops waiting for a task that is not ready yet (start + DISCOVERY_TIMEOUT). */
  readonly discoveryDeadline?: number;
  /** The transient failure discovery is retrying, and when it tries again. */
  readonly retrying?: { readonly step: string; readonly error: string; readonly nextAttemptAt: number };
  /** Why discovery failed, for the operator who reads the file. */
  readonly cause?: string;
  /** When the daemon wrote the file. */
  readonly writtenAt?: number;
}

/** How many polling intervals (plus the request timeout) the watch may go without a usable poll. */
export const STALE_AFTER_INTERVALS = 3;
/** How far past its own deadline a daemon that is discovering or draining counts as hung, not late. */
export const DEADLINE_SLACK_MS = 5_000;

export interface HealthVerdict {
  readonly healthy: boolean;
  readonly reason: string;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function healthVerdict(status: Status | undefined, now: number): HealthVerdict {
  if (status === undefined) return { healthy: false, reason: "no status file: the sidecar has not started yet" };
  const details = status.details as Partial<SidecarStatusDetails>;
  switch (status.state) {
    case "discovering":
      return discoveringVerdict(details, now);
    case "discovery-failed":
      return { healthy: false, reason: `discovery failed: ${details.cause ?? "see the sidecar's log"}` };
    case "watching":
      return watchingVerdict(details, now);
    case "draining":
      return withinDeadline("draining", details.drainDeadline ?? 0, "the end of DEREGISTRATION_WAIT", now);
    case "finished":
      return withinDeadline("finished", details.writtenAt ?? 0, "the watch finished", now);
    default:
      return { healthy: false, reason: `unknown state ${JSON.stringify(status.state)} in the status file` };
  }
}

function withinDeadline(state: SidecarState, deadline: number, what: string, now: number): HealthVerdict {
  if (now <= deadline + DEADLINE_SLACK_MS) {
    return {
      healthy: true,
      reason: `${state}: ${seconds(Math.abs(deadline - now))} ${now <= deadline ? "before" : "after"} ${what}`,
    };
  }
  return { healthy: false, reason: `${state}, ${seconds(now - deadline)} after ${what}: the sidecar is stuck` };
}

/**
 * Within DISCOVERY_TIMEOUT, or past it while discovery keeps retrying a transient AWS failure: a
 * regional API event must not make ECS replace every task that starts during it.
 */
function discoveringVerdict(details: Partial<SidecarStatusDetails>, now: number): HealthVerdict {
  const requestTimeoutMs = details.requestTimeoutMs ?? 0;
  const retrying = details.retrying;
  // The last attempt may start just before its time and take the whole request timeout.
  const deadline = (details.discoveryDeadline ?? 0) + requestTimeoutMs;
  if (retrying === undefined || now <= deadline + DEADLINE_SLACK_MS) {
    return withinDeadline("discovering", deadline, "the end of DISCOVERY_TIMEOUT", now);
  }
  const verdict = withinDeadline(
    "discovering",
    retrying.nextAttemptAt + requestTimeoutMs,
    "the next attempt was due",
    now,
  );
  return verdict.healthy
    ? {
      healthy: true,
      reason: `discovering past DISCOVERY_TIMEOUT: ${retrying.step} keeps failing with ${retrying.error}, ` +
        `which is transient, so it is retried until AWS recovers; ${verdict.reason}`,
    }
    : verdict;
}

function watchingVerdict(details: Partial<SidecarStatusDetails>, now: number): HealthVerdict {
  const window = STALE_AFTER_INTERVALS * (details.pollIntervalMs ?? 0) + (details.requestTimeoutMs ?? 0);
  const windowText = `${STALE_AFTER_INTERVALS} polling intervals plus the request timeout (${seconds(window)})`;
  // Until the first poll completes, the watch's start is the reference: the first poll is due at once.
  const age = (at: number | undefined) => now - (at ?? details.watchStartedAt ?? 0);
  const lastSuccess = details.lastSuccessfulPollAt === undefined
    ? "no successful poll of every target group yet"
    : `last successful poll of every target group ${seconds(age(details.lastSuccessfulPollAt))} ago`;
  const sinceCompleted = age(details.lastPollCompletedAt);
  if (sinceCompleted > window) {
    return {
      healthy: false,
      reason: `watching, but no poll has completed for ${seconds(sinceCompleted)}, more than ${windowText}: ` +
        `the watch loop is stuck`,
    };
  }
  const sinceUsable = age(details.lastPollWithoutPermanentErrorAt);
  if (sinceUsable > window) {
    return {
      healthy: false,
      reason: `watching, but every poll for ${seconds(sinceUsable)}, more than ${windowText}, failed with a ` +
        `permanent error (${details.lastPollError?.code ?? "unknown"}): fix the task role or the service's ` +
        `target groups; ${lastSuccess}`,
    };
  }
  const error = details.lastPollError;
  const failing = error && (details.lastSuccessfulPollAt === undefined || error.at > details.lastSuccessfulPollAt)
    ? `; last failed poll ${seconds(age(error.at))} ago (${error.code}, ${error.transient ? "transient" : "permanent"})`
    : "";
  return {
    healthy: true,
    reason: `watching, last poll completed ${seconds(sinceCompleted)} ago; ${lastSuccess}${failing}`,
  };
}

/** The health verdict for the status file at `path`; a file that cannot be read is unhealthy. */
export async function checkHealth(path: string, now: number = monotonicNow()): Promise<HealthVerdict> {
  try {
    return healthVerdict(await readStatus(path), now);
  } catch (error) {
    return { healthy: false, reason: `cannot read ${path}: ${(error as Error).message}` };
  }
}

/** Keeps the status file current; a failed write is logged (once per streak) and never stops the daemon. */
export class StatusReporter {
  #failing = false;
  /** Writes run one after another: two at once would share the temp file. */
  #writing: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    readonly timing: Pick<SidecarStatusDetails, "pollIntervalMs" | "requestTimeoutMs">,
    readonly log: Logger,
  ) {}

  report(state: SidecarState, details: Omit<SidecarStatusDetails, "pollIntervalMs" | "requestTimeoutMs"> = {}) {
    this.#writing = this.#writing.then(() => this.#write(state, details));
    return this.#writing;
  }

  async #write(state: SidecarState, details: Omit<SidecarStatusDetails, "pollIntervalMs" | "requestTimeoutMs">) {
    try {
      await writeStatus(this.path, {
        role: "nlb-sidecar",
        pid: Deno.pid,
        updatedAt: Date.now(),
        state,
        details: { ...this.timing, ...details, writtenAt: monotonicNow() },
      });
      this.#failing = false;
    } catch (error) {
      if (!this.#failing) {
        this.log.warning("cannot write the status file {path}: {detail}; the health check will fail", {
          path: this.path,
          detail: (error as Error).message,
        });
      }
      this.#failing = true;
    }
  }
}
