/**
 * A fleet of nlb-sidecars sharing one account's ELB API budget, on a virtual clock: N sidecars in one
 * process, each the real decision code (the `DrainMachine` and, for adaptive polling, the `PollPacing`
 * the watch loop feeds), each watching one target group, against a token-bucket model of the ELBv2
 * limit. Fixed pacing (every sidecar keeps POLLING_FREQUENCY) against adaptive pacing, and a deployment
 * that starts 200 tasks at once. Seconds of wall time for hours of fleet time.
 *
 * Run alone: `deno run -A bench/nlb_fleet.ts`.
 * @module
 */
import { type BenchFigure, figureLine, median } from "./result.ts";
import { DrainMachine, type Observation, type WatchedTarget } from "../lib/nlb_sidecar/machine.ts";
import { PollPacing } from "../lib/nlb_sidecar/pacing.ts";
import { backoffDelay, defaultBackoff } from "../lib/retry.ts";
import { seededRandom } from "../sim/faults.ts";

const ROLE = "nlb-sidecar";
const SEEDS = [1, 2, 3];
/** The default POLLING_FREQUENCY. */
const INTERVAL_MS = 30_000;

/**
 * ELBv2's API throttling: one token bucket per account and region for the `Describe*` calls, 40 tokens,
 * refilled at 10 a second, each call takes one; a call that finds the bucket empty fails with
 * `Throttling` (https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html).
 */
const ELB_DESCRIBE_BUCKET = { capacity: 40, refillPerSecond: 10 } as const;
/** The share of the bucket left to the console, Terraform and monitoring, which call at a steady rate. */
const OTHER_CALLERS_SHARE = 0.2;
/** One DescribeTargetHealth round trip, virtual: it only orders answers after calls. */
const LATENCY_MS = { min: 20, max: 120 } as const;

export class TokenBucket {
  #tokens: number;
  #at = 0;

  constructor(readonly capacity: number, readonly refillPerSecond: number) {
    this.#tokens = capacity;
  }

  /** Takes a token at `at` (times never go back); false: the call is throttled. */
  take(at: number): boolean {
    this.#tokens = Math.min(this.capacity, this.#tokens + (at - this.#at) / 1000 * this.refillPerSecond);
    this.#at = at;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}

/** Events in time order; equal times in the order they were scheduled. */
class Timeline {
  readonly #heap: Array<{ at: number; seq: number; run: () => void }> = [];
  #seq = 0;
  now = 0;

  at(at: number, run: () => void): void {
    const heap = this.#heap;
    heap.push({ at, seq: this.#seq++, run });
    for (let i = heap.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!this.#before(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  runUntil(end: number): void {
    const heap = this.#heap;
    while (heap.length > 0 && heap[0].at <= end) {
      const top = heap[0];
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        for (let i = 0;;) {
          const l = 2 * i + 1, r = l + 1;
          let m = i;
          if (l < heap.length && this.#before(heap[l], heap[m])) m = l;
          if (r < heap.length && this.#before(heap[r], heap[m])) m = r;
          if (m === i) break;
          [heap[i], heap[m]] = [heap[m], heap[i]];
          i = m;
        }
      }
      this.now = top.at;
      top.run();
    }
    this.now = end;
  }

  #before(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
}

type Pacing = "fixed" | "adaptive";

interface Counts {
  calls: number;
  throttled: number;
}

/** One account: its bucket, the other callers' steady share, and the calls counted in a window. */
class Account {
  readonly bucket = new TokenBucket(ELB_DESCRIBE_BUCKET.capacity, ELB_DESCRIBE_BUCKET.refillPerSecond);
  readonly timeline = new Timeline();
  readonly counted: Counts = { calls: 0, throttled: 0 };
  countFrom = 0;

  constructor(readonly random: () => number) {
    const otherEveryMs = 1000 / (OTHER_CALLERS_SHARE * ELB_DESCRIBE_BUCKET.refillPerSecond);
    const other = () => {
      this.bucket.take(this.timeline.now);
      // Poisson arrivals: the console and monitoring do not call on a beat.
      this.timeline.at(this.timeline.now - otherEveryMs * Math.log(1 - this.random()), other);
    };
    this.timeline.at(0, other);
  }

  /** A sidecar's call, now: answered (true) or throttled. */
  call(): boolean {
    const answered = this.bucket.take(this.timeline.now);
    if (this.timeline.now >= this.countFrom) {
      this.counted.calls++;
      if (!answered) this.counted.throttled++;
    }
    return answered;
  }

  latency(): number {
    return LATENCY_MS.min + (LATENCY_MS.max - LATENCY_MS.min) * this.random();
  }
}

/** One sidecar's watch loop on the virtual clock: what `watchTargets` does, with the account as AWS. */
class Sidecar {
  readonly target: WatchedTarget;
  readonly machine: DrainMachine;
  readonly pacing?: PollPacing;
  drainAt = Infinity;
  detectedAt?: number;
  firstAnswerAt?: number;
  #wake?: number;

  constructor(readonly account: Account, index: number, pacing: Pacing, startedAt: number) {
    this.target = { targetGroupArn: `tg-${index}`, id: "10.0.0.1", port: 8080 };
    this.machine = new DrainMachine({
      targets: [this.target],
      pollIntervalMs: INTERVAL_MS,
      // The drained sidecar keeps polling, so the fleet's load stays N for the whole run.
      deregistrationWaitMs: Infinity,
      drainMode: "fixed",
      quietPeriodMs: 5_000,
      startedAt,
      random: account.random,
    });
    if (pacing === "adaptive") this.pacing = new PollPacing(INTERVAL_MS);
    account.timeline.at(startedAt, () => this.#step([]));
  }

  #step(observations: Observation[]): void {
    const timeline = this.account.timeline;
    const now = timeline.now;
    // As in watch.ts: the pace is set from what was observed, then the machine steps.
    if (this.pacing) {
      this.pacing.observe(observations);
      this.machine.setPollInterval(this.pacing.intervalMs);
    }
    const step = this.machine.step(now, observations);
    if (observations.some((o) => o.kind === "target-health")) this.firstAnswerAt ??= now;
    if (this.detectedAt === undefined && step.events.some((e) => e.kind === "drain-started")) this.detectedAt = now;
    for (const action of step.actions) if (action.kind === "poll") this.#poll();
    if (Number.isFinite(step.wakeAt) && step.wakeAt !== this.#wake) {
      const wake = this.#wake = step.wakeAt;
      timeline.at(wake, () => {
        if (this.#wake === wake) this.#step([]);
      });
    }
  }

  #poll(): void {
    const timeline = this.account.timeline;
    const answered = this.account.call();
    const state = timeline.now >= this.drainAt ? "draining" : "healthy";
    const targetGroupArn = this.target.targetGroupArn;
    timeline.at(timeline.now + this.account.latency(), () => {
      const at = timeline.now;
      this.#step([
        answered ? { kind: "target-health", at, targetGroupArn, readings: [{ ...this.target, state }] } : {
          kind: "poll-failed",
          at,
          targetGroupArn,
          error: { code: "Throttling", message: "Rate exceeded", transient: true },
        },
      ]);
    });
  }
}

const quantile = (values: readonly number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};

/** The sidecars' share of the bucket's refill, in calls a second. */
const SIDECAR_BUDGET_PER_SECOND = (1 - OTHER_CALLERS_SHARE) * ELB_DESCRIBE_BUCKET.refillPerSecond;

/** The budget rule: the POLLING_FREQUENCY (ms) at which `pairs` task-target-group pairs fit the sidecars' share. */
function budgetIntervalMs(pairs: number): number {
  return Math.max(INTERVAL_MS, pairs / SIDECAR_BUDGET_PER_SECOND * 1000);
}

interface SteadyResult {
  readonly callsPerSecond: number;
  readonly throttledShare: number;
  /** From `draining` to the drain, in configured intervals. */
  readonly detectionMs: readonly number[];
}

/** Warm-up, so adaptive pacing has settled; then every target drains once, at a random time. */
const WARM_UP_MS = 60 * 60_000;
const DRAINS_WITHIN_MS = 60 * 60_000;
/** The run goes on this long after the last drain; a drain not seen by then counts as this late. */
const DETECTION_HORIZON_MS = 30 * 60_000;

function steadyFleet(size: number, pacing: Pacing, seed: number): SteadyResult {
  const account = new Account(seededRandom(seed));
  const fleet = Array.from({ length: size }, (_, i) => {
    // A fleet that has been running: its tasks started at different times.
    const sidecar = new Sidecar(account, i, pacing, account.random() * INTERVAL_MS);
    sidecar.drainAt = WARM_UP_MS + account.random() * DRAINS_WITHIN_MS;
    return sidecar;
  });
  account.countFrom = WARM_UP_MS;
  const end = WARM_UP_MS + DRAINS_WITHIN_MS + DETECTION_HORIZON_MS;
  account.timeline.runUntil(end);
  const { calls, throttled } = account.counted;
  return {
    callsPerSecond: calls / ((end - WARM_UP_MS) / 1000),
    throttledShare: throttled / calls,
    detectionMs: fleet.map((s) => Math.min(s.detectedAt ?? end, s.drainAt + DETECTION_HORIZON_MS) - s.drainAt),
  };
}

interface DeploymentResult {
  /** From the start until every task has discovered its targets. */
  readonly discoveredSeconds: number;
  /** Until every task has had its first answered DescribeTargetHealth. */
  readonly watchingSeconds: number;
  readonly discoveryCallsPerTask: number;
  /** Of all calls (discovery and polls) in the first 5 minutes. */
  readonly throttledShare: number;
  /**
   * Of the calls in minutes 2 to 5: 200 tasks at 30 s and the other callers need 8.7 calls a second of the
   * 10, so any throttling left is a fleet still polling in lock-step.
   */
  readonly throttledAfterFirstMinute: number;
}

/**
 * 200 tasks start at once (within the 5 s ECS takes to start a batch). Each discovers with one
 * DescribeTargetGroups (its ELB call; the ECS calls have ECS's own bucket) retried with discovery's real
 * backoff when throttled, then watches.
 */
function deployment(tasks: number, pacing: Pacing, seed: number): DeploymentResult {
  const account = new Account(seededRandom(seed));
  const fleet: Sidecar[] = [];
  let discoveryCalls = 0;
  let discoveredAt = 0;
  for (let i = 0; i < tasks; i++) {
    const discover = (attempt: number) => {
      discoveryCalls++;
      if (account.call()) {
        discoveredAt = account.timeline.now;
        fleet.push(new Sidecar(account, i, pacing, account.timeline.now));
        return;
      }
      account.timeline.at(
        account.timeline.now + backoffDelay(attempt, defaultBackoff, account.random),
        () => discover(attempt + 1),
      );
    };
    account.timeline.at(account.random() * 5_000, () => discover(0));
  }
  account.timeline.runUntil(60_000);
  const firstMinute = { ...account.counted };
  account.timeline.runUntil(5 * 60_000);
  const { calls, throttled } = account.counted;
  const all = fleet.length === tasks;
  return {
    discoveredSeconds: all ? discoveredAt / 1000 : Infinity,
    watchingSeconds: all ? Math.max(...fleet.map((s) => s.firstAnswerAt ?? Infinity)) / 1000 : Infinity,
    discoveryCallsPerTask: discoveryCalls / tasks,
    throttledShare: throttled / calls,
    throttledAfterFirstMinute: (throttled - firstMinute.throttled) / (calls - firstMinute.calls),
  };
}

const FLEET_SIZES = [100, 300, 1000, 3000] as const;
const DEPLOYMENT_TASKS = 200;

const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/** The rows of one measured quantity over the seeds; only the targeted one can miss. */
function figure(
  name: string,
  unit: string,
  runs: readonly number[],
  method: string,
  /** `met` is asked about the worst (largest) run. */
  target?: { readonly text: string; readonly met: (worst: number) => boolean },
): BenchFigure {
  const values = runs.map((v) => round(v));
  const facts: BenchFigure = { role: ROLE, name, value: median(values), unit, runs: values, method };
  return target ? { ...facts, target: target.text, met: target.met(Math.max(...values)) } : facts;
}

function steadyFigures(size: number, pacing: Pacing): BenchFigure[] {
  const runs = SEEDS.map((seed) => steadyFleet(size, pacing, seed));
  const targeted = size === 1000 && pacing === "adaptive";
  const budgetMs = budgetIntervalMs(size);
  const method = `${size} sidecars (the real DrainMachine${pacing === "adaptive" ? " fed by PollPacing" : ""}), ` +
    `one target group each, POLLING_FREQUENCY=30, against a token bucket of 40 refilled at 10/s, ` +
    `${OTHER_CALLERS_SHARE * 100}% of it taken by other callers (Poisson); virtual clock: ${WARM_UP_MS / 60_000} ` +
    `min warm-up, then each target drains once at a random time within ${DRAINS_WITHIN_MS / 60_000} min; ` +
    `the budget rule's interval for ${size} pairs is ${round(budgetMs / 1000, 1)} s; seeds ${SEEDS.join(", ")}`;
  const name = (what: string) => `fleet of ${size}, ${pacing} polling: ${what}`;
  const p = (q: number, unitMs: number) => runs.map((r) => quantile(r.detectionMs, q) / unitMs);
  return [
    figure(name("DescribeTargetHealth calls per second"), "calls/s", runs.map((r) => r.callsPerSecond), method),
    figure(
      name("share of calls throttled"),
      "%",
      runs.map((r) => 100 * r.throttledShare),
      method,
      targeted ? { text: "< 5%", met: (worst) => worst < 5 } : undefined,
    ),
    figure(name("drain detection delay p50"), "intervals", p(0.5, INTERVAL_MS), method),
    figure(name("drain detection delay p99"), "intervals", p(0.99, INTERVAL_MS), method),
    figure(
      name("drain detection delay p99, in intervals of the budget rule"),
      "intervals",
      p(0.99, budgetMs),
      method,
      targeted ? { text: "<= 3 intervals of max(30 s, N / 8 s)", met: (worst) => worst <= 3 } : undefined,
    ),
  ];
}

function deploymentFigures(pacing: Pacing): BenchFigure[] {
  const runs = SEEDS.map((seed) => deployment(DEPLOYMENT_TASKS, pacing, seed));
  const method = `${DEPLOYMENT_TASKS} tasks started within 5 s on an account with only the other callers (20%): ` +
    `one DescribeTargetGroups each, retried with discovery's backoff (lib/retry.ts) when throttled, then the ` +
    `watch (${pacing} polling, POLLING_FREQUENCY=30); seeds ${SEEDS.join(", ")}`;
  const name = (what: string) => `deployment of ${DEPLOYMENT_TASKS} tasks at once, ${pacing} polling: ${what}`;
  return [
    figure(name("every task discovered after"), "s", runs.map((r) => r.discoveredSeconds), method),
    figure(name("discovery calls per task"), "calls", runs.map((r) => r.discoveryCallsPerTask), method),
    figure(name("every task's first answered poll after"), "s", runs.map((r) => r.watchingSeconds), method),
    figure(name("share of calls throttled in 5 min"), "%", runs.map((r) => 100 * r.throttledShare), method),
    figure(
      name("share of calls throttled in minutes 2 to 5 (lock-step)"),
      "%",
      runs.map((r) => 100 * r.throttledAfterFirstMinute),
      method,
      { text: "< 1%", met: (worst) => worst < 1 },
    ),
  ];
}

export function nlbFleetBenchmarks(): Promise<BenchFigure[]> {
  const pacings = ["fixed", "adaptive"] as const;
  return Promise.resolve([
    ...FLEET_SIZES.flatMap((size) => pacings.flatMap((pacing) => steadyFigures(size, pacing))),
    ...pacings.flatMap(deploymentFigures),
  ]);
}

if (import.meta.main) {
  const startedAt = performance.now();
  for (const figure of await nlbFleetBenchmarks()) {
    console.log(figureLine(figure));
  }
  console.log(`${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
}
