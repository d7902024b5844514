/**
 * How often the sidecar polls when the account's ELB API budget runs short. ELBv2 `Describe*` calls of
 * an account and region share one token bucket: 40 tokens, refilled at 10 a second, also drawn on by the
 * console, Terraform and monitoring
 * (https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html). A fleet
 * polling faster than that stays throttled for good if every sidecar keeps its pace, so each sidecar
 * paces itself, as TCP does with a shared link: a transient failure (throttling, 5xx, a timeout: AWS
 * under strain) doubles the interval, up to {@link MAX_SLOWDOWN} times the configured one; time without
 * failures brings it back gradually, by {@link RECOVERY_PER_INTERVAL} of the configured interval for
 * every configured interval that passes. A fleet then settles where slow-downs balance the recovery:
 * about one call in 49 slows its sidecar, whatever the fleet's size (each slow-down adds as much as the
 * recovery of the intervals it lasts), which with the quick retries that are throttled too measured under
 * 5% of calls throttled at 1,000 sidecars (`bench/nlb_fleet.ts`), instead of staying throttled. A smaller
 * recovery step throttles less but takes longer to return: from 2x to the configured pace it takes 48
 * intervals (24 min at 30 s). Permanent errors (access denied) do not slow the pace, asking less often
 * does not fix them, and the pace keeps recovering through them.
 *
 * The pace only spaces the regular polls. The machine's one quick retry after the first failure of a
 * streak stays, and a reading that shows `draining` starts the drain whatever the pace: the drain is
 * acted on with the first call that gets through. Pure: observations and their times in, the interval
 * out.
 * @module
 */
import type { Observation } from "./machine.ts";

/**
 * The slowest pace, as a multiple of the configured interval. At the default 30 s that is a poll every
 * 4 minutes, still inside a target group's default deregistration delay of 300 s, so a drain is seen
 * before ELB finishes deregistering, and enough for a fleet of 8 x 240 = 1,900 pairs at 80% of the
 * bucket. Larger fleets must follow the budget rule (POLLING_FREQUENCY >= pairs / 8) instead.
 */
export const MAX_SLOWDOWN = 8;
/** Each slow-down doubles the interval (multiplicative decrease of the call rate). */
const SLOWDOWN_FACTOR = 2;
/** Of the configured interval, taken off the slow-down per configured interval without a failure. */
export const RECOVERY_PER_INTERVAL = 1 / 48;
/**
 * A slow-down counts once per round: failures within this share of the interval in force before it (the
 * quick retry, the other target groups polled together) are the same event seen again, not a new one.
 */
const SAME_ROUND = 0.75;
/** A slow-down is logged when it makes the interval at least this much longer than the last line said. */
const SLOWED_NOTABLY = 1.25;

export interface PaceChange {
  readonly intervalMs: number;
  readonly previousIntervalMs: number;
  /** slowed: a transient failure; recovering: down a step (halving) on the way back; restored: back at the configured interval. */
  readonly kind: "slowed" | "recovering" | "restored";
  /** The error that slowed the pace. */
  readonly error?: string;
}

/**
 * The pace of one sidecar's polls. `observe` takes the watch loop's observations in the order they
 * arrived and says when the pace changed enough to tell the operator: every slow-down, each halving on
 * the way back, and the return to the configured interval. `intervalMs` is the pace in force.
 */
export class PollPacing {
  readonly #configuredMs: number;
  /** The interval in force as a multiple of the configured one, in [1, MAX_SLOWDOWN]. */
  #slowdown = 1;
  /** Recovery is counted from here: the last slow-down or answer. */
  #recoveringSince?: number;
  #lastSlowdown?: { readonly at: number; readonly previousMs: number };
  /** The interval of the last change `observe` returned: recovery moves in small steps, lines come per halving. */
  #reportedMs: number;

  constructor(configuredIntervalMs: number) {
    this.#configuredMs = configuredIntervalMs;
    this.#reportedMs = configuredIntervalMs;
  }

  get intervalMs(): number {
    return this.#configuredMs * this.#slowdown;
  }

  observe(observations: readonly Observation[]): PaceChange | undefined {
    let change: PaceChange | undefined;
    for (const observation of observations) {
      const kind = observation.kind === "poll-failed" && observation.error.transient
        ? this.#failed(observation.at)
        : observation.kind === "target-health" || observation.kind === "poll-failed"
        ? this.#unstrained(observation.at)
        : undefined;
      if (kind === undefined) continue;
      change = {
        kind,
        intervalMs: this.intervalMs,
        previousIntervalMs: this.#reportedMs,
        ...(kind === "slowed"
          ? { error: (observation as Extract<Observation, { kind: "poll-failed" }>).error.code }
          : {}),
      };
      this.#reportedMs = this.intervalMs;
    }
    return change;
  }

  #failed(at: number): PaceChange["kind"] | undefined {
    const last = this.#lastSlowdown;
    if (last && at - last.at < SAME_ROUND * last.previousMs) return undefined;
    const previousMs = this.intervalMs;
    this.#recover(at);
    this.#slowdown = Math.min(MAX_SLOWDOWN, this.#slowdown * SLOWDOWN_FACTOR);
    this.#lastSlowdown = { at, previousMs };
    // Near the cap a slow-down only undoes a little recovery: not worth a line of its own.
    return this.intervalMs >= SLOWED_NOTABLY * this.#reportedMs ? "slowed" : undefined;
  }

  /** An answer, or a permanent error: nothing says AWS is short of capacity, so the pace keeps recovering. */
  #unstrained(at: number): PaceChange["kind"] | undefined {
    this.#recover(at);
    if (this.intervalMs === this.#reportedMs) return undefined;
    if (this.#slowdown === 1) return "restored";
    // A line per halving on the way back (8x, 4x, 2x), not one per poll.
    return Math.ceil(Math.log2(this.#slowdown)) < Math.ceil(Math.log2(this.#reportedMs / this.#configuredMs))
      ? "recovering"
      : undefined;
  }

  #recover(at: number): void {
    const since = this.#recoveringSince ?? at;
    this.#recoveringSince = Math.max(since, at);
    const recovered = RECOVERY_PER_INTERVAL * Math.max(0, at - since) / this.#configuredMs;
    this.#slowdown = Math.max(1, this.#slowdown - recovered);
  }
}
