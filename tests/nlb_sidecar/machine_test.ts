/**
 * The decision machine on its own: observations and time in, actions and events out. No AWS, no
 * timers: every case drives `step` with explicit times.
 */
import assert from "node:assert/strict";
import {
  type Action,
  DrainMachine,
  type DrainMode,
  effectiveDrainMode,
  type Observation,
  type Step,
  type TargetHealthReading,
} from "../../lib/nlb_sidecar/machine.ts";
import { seededRandom } from "../../sim/faults.ts";
import { A, B, drainMachine, INTERVAL, TG_A, TG_B } from "./machine_fixtures.ts";

const machine = drainMachine;

const health = (at: number, target: typeof A, state: string, reason?: string): Observation => ({
  kind: "target-health",
  at,
  targetGroupArn: target.targetGroupArn,
  readings: [{ id: target.id, port: target.port, state, reason } satisfies TargetHealthReading],
});
const gone = (at: number, target: typeof A) => health(at, target, "unused", "Target.NotRegistered");
const pollFailed = (at: number, target: typeof A, code = "Throttling", transient = true): Observation => ({
  kind: "poll-failed",
  at,
  targetGroupArn: target.targetGroupArn,
  error: { code, message: `${code} happened`, transient },
});
const throttled = (at: number, target: typeof A) => pollFailed(at, target);
const polls = (step: Step) => step.actions.filter((a): a is Extract<Action, { kind: "poll" }> => a.kind === "poll");
const kinds = (step: Step) => step.events.map((e) => e.kind);

/** A machine that has seen `A` serving (healthy at 1 ms), so that a `draining` reading is this task's drain. */
function servingMachine(options: Parameters<typeof machine>[0] = {}): DrainMachine {
  const m = machine(options);
  m.step(0);
  m.step(1, [health(1, A, "healthy")]);
  return m;
}

Deno.test("machine: polls every target group at once at start, then once per interval", () => {
  const m = machine({ targets: [A, B] });
  const first = m.step(0);
  assert.deepEqual(polls(first).map((p) => p.targetGroupArn), [TG_A, TG_B]);
  assert.equal(first.wakeAt, Infinity, "both polls in flight: nothing to do until an answer arrives");
  const answered = m.step(100, [health(100, A, "healthy"), health(100, B, "healthy")]);
  assert.equal(polls(answered).length, 0, "no second call before the interval is over");
  assert.equal(answered.wakeAt, INTERVAL, "random 0.5 means no jitter");
  assert.equal(polls(m.step(INTERVAL - 1)).length, 0);
  assert.equal(polls(m.step(INTERVAL)).length, 2);
});

Deno.test("machine: the interval jitters by at most 10% either way", () => {
  for (const [random, expected] of [[0, 0.9 * INTERVAL], [0.999999, 1.1 * INTERVAL]] as const) {
    const m = machine({ random: () => random });
    m.step(0);
    const next = m.step(0, [health(0, A, "healthy")]);
    assert.ok(Math.abs(next.wakeAt - expected) < 1, `random ${random}: next poll at ${next.wakeAt}`);
  }
});

Deno.test("machine: draining starts the drain and finishes after the deregistration wait (fixed)", () => {
  const m = machine();
  m.step(0);
  m.step(10, [health(10, A, "healthy")]);
  const draining = m.step(40_000, [health(40_000, A, "draining", "Target.DeregistrationInProgress")]);
  assert.deepEqual(draining.events, [{
    kind: "drain-started",
    mode: "fixed",
    waitMs: 120_000,
    target: A,
    state: "draining",
    previousState: "healthy",
    reason: "Target.DeregistrationInProgress",
    description: undefined,
  }], "the change to draining is one event: the drain start");
  assert.equal(m.phase, "draining");
  assert.equal(m.status().drainDeadline, 160_000);
  assert.equal(m.step(159_999).finished, undefined);
  const done = m.step(160_000);
  assert.deepEqual(done.finished, { reason: "drain-wait-elapsed", waitedMs: 120_000 });
  assert.deepEqual(done.events, [{ kind: "finished", target: A, reason: "drain-wait-elapsed", waitedMs: 120_000 }]);
  assert.equal(m.phase, "finished");
});

Deno.test("machine: a registered target that becomes not-registered finishes at once", () => {
  const m = machine();
  m.step(0);
  m.step(5, [health(5, A, "healthy")]);
  const step = m.step(30_010, [gone(30_010, A)]);
  assert.deepEqual(step.finished, { reason: "deregistered", waitedMs: 0 });
});

Deno.test("machine: unused before the first registration keeps waiting", () => {
  const m = machine();
  m.step(0);
  const step = m.step(5, [gone(5, A)]);
  assert.equal(step.finished, undefined);
  assert.equal(m.phase, "watching");
  m.step(INTERVAL, [health(INTERVAL, A, "initial", "Elb.RegistrationInProgress")]);
  const left = m.step(2 * INTERVAL, [gone(2 * INTERVAL, A)]);
  assert.equal(left.finished?.reason, "deregistered", "registered once (initial), then gone");
});

Deno.test("machine: only a target gone from every group ends the task; one gone group alone does not", () => {
  const m = machine({ targets: [A, B] });
  m.step(0);
  m.step(5, [health(5, A, "healthy"), health(5, B, "healthy")]);
  const partly = m.step(INTERVAL, [gone(INTERVAL, A), health(INTERVAL, B, "healthy")]);
  assert.equal(partly.finished, undefined, "still served through group B");
  assert.equal(m.phase, "watching");
  const all = m.step(2 * INTERVAL, [gone(2 * INTERVAL, B)]);
  assert.equal(all.finished?.reason, "deregistered");
  const finished = all.events.find((e) => e.kind === "finished");
  assert.deepEqual(finished?.kind === "finished" && finished.target, B, "the last target to leave is named");
});

Deno.test("machine: a drain that sees its target gone finishes early", () => {
  const m = servingMachine();
  m.step(5, [health(5, A, "draining", "Target.DeregistrationInProgress")]);
  const step = m.step(40_005, [gone(40_005, A)]);
  assert.deepEqual(step.finished, { reason: "deregistered", waitedMs: 40_000 });
});

Deno.test("machine: draining in one group of several starts the drain; unhealthy.draining does not", () => {
  const m = machine({ targets: [A, B] });
  m.step(0);
  m.step(1, [health(1, A, "healthy"), health(1, B, "healthy")]);
  const unhealthy = m.step(5, [health(5, A, "unhealthy.draining", "Target.FailedHealthChecks")]);
  assert.ok(!kinds(unhealthy).includes("drain-started"), "a failing health check may recover: not a drain");
  const step = m.step(6, [health(6, B, "draining", "Target.DeregistrationInProgress")]);
  const started = step.events.find((e) => e.kind === "drain-started");
  assert.ok(started && started.kind === "drain-started");
  assert.deepEqual(started.target, B);
});

Deno.test("machine: every state change is one event, repeats are none", () => {
  const m = machine();
  m.step(0);
  assert.deepEqual(kinds(m.step(1, [health(1, A, "initial", "Elb.RegistrationInProgress")])), ["target-changed"]);
  assert.deepEqual(kinds(m.step(2, [health(2, A, "initial", "Elb.RegistrationInProgress")])), []);
  const healthy = m.step(3, [health(3, A, "healthy")]).events[0];
  assert.ok(healthy.kind === "target-changed");
  assert.equal(healthy.previousState, "initial");
  assert.equal(healthy.state, "healthy");
});

Deno.test("machine: the first transient failure of a streak is retried once, 10-30% of an interval later", () => {
  for (const [random, fraction] of [[0, 0.1], [0.5, 0.2], [0.999999, 0.3]] as const) {
    const m = machine({ random: () => random });
    m.step(0);
    const failed = m.step(100, [throttled(100, A)]);
    const event = failed.events[0];
    assert.ok(event.kind === "poll-failed" && event.changed && event.failures === 1);
    assert.ok(Math.abs(failed.wakeAt - (100 + fraction * INTERVAL)) < 1, `random ${random}: retry at ${failed.wakeAt}`);
    assert.equal(event.retryInMs, failed.wakeAt - 100);
  }
});

Deno.test("machine: consecutive failures wait the regular interval; a permanent one never retries early", () => {
  const m = machine({ random: () => 0.5 });
  m.step(0);
  const retryAt = m.step(100, [throttled(100, A)]).wakeAt;
  assert.equal(polls(m.step(retryAt)).length, 1, "the quick retry");
  const again = m.step(retryAt + 50, [throttled(retryAt + 50, A)]);
  const repeat = again.events[0];
  assert.ok(repeat.kind === "poll-failed" && !repeat.changed && repeat.failures === 2, "same error: not a change");
  assert.equal(again.wakeAt, retryAt + INTERVAL, "a streak keeps the regular interval from the last call");
  assert.equal(polls(m.step(retryAt + INTERVAL)).length, 1);
  const third = m.step(retryAt + INTERVAL + 50, [throttled(retryAt + INTERVAL + 50, A)]);
  assert.equal(third.wakeAt, retryAt + 2 * INTERVAL);
  const recovered = m.step(retryAt + 2 * INTERVAL, [health(retryAt + 2 * INTERVAL, A, "healthy")]);
  assert.deepEqual(kinds(recovered), ["poll-recovered", "target-changed"]);

  const p = machine();
  p.step(0);
  const denied = p.step(50, [pollFailed(50, A, "TargetGroupNotFoundException", false)]);
  assert.equal(denied.wakeAt, INTERVAL, "a permanent error waits for the regular tick");
});

const HOUR = 3_600_000;

/** DescribeTargetHealth calls made in an hour when every call is answered by `answer`, 80 ms after it was made. */
function callsInAnHour(answer: (at: number) => Observation): number[] {
  const m = machine({ random: seededRandom(42) });
  const calls: number[] = [];
  let now = 0;
  let step = m.step(now);
  while (now < HOUR) {
    if (polls(step).length > 0) {
      calls.push(now);
      now += 80;
      step = m.step(now, [answer(now)]);
    } else {
      now = step.wakeAt;
      step = m.step(now);
    }
  }
  return calls;
}

Deno.test("machine: an hour of 100% throttling costs no more calls than an hour of healthy polling", () => {
  const healthy = callsInAnHour((at) => health(at, A, "healthy"));
  const throttledHour = callsInAnHour((at) => throttled(at, A));
  const expected = HOUR / INTERVAL; // 120 at POLLING_FREQUENCY=30
  assert.ok(Math.abs(healthy.length - expected) <= 3, `healthy: ${healthy.length} calls`);
  assert.ok(
    throttledHour.length <= healthy.length + 2,
    `throttled: ${throttledHour.length} calls, healthy: ${healthy.length}: failures must not multiply calls`,
  );
  const gaps = throttledHour.slice(1).map((at, i) => at - throttledHour[i]);
  const early = gaps.filter((gap) => gap < (1 - 0.1) * INTERVAL);
  assert.equal(early.length, 1, "only the first failure of the streak is retried early");
  assert.ok(early[0] >= 0.1 * INTERVAL, `the quick retry came ${early[0]} ms after the call, not at once`);
});

Deno.test("machine: failures never finish anything, however many", () => {
  const m = machine({ deregistrationWaitMs: 1_000 });
  let now = 0;
  m.step(now);
  for (let i = 0; i < 500; i++) {
    now += INTERVAL;
    const step = m.step(now, [throttled(now, A)]);
    assert.equal(step.finished, undefined);
    for (const action of step.actions) assert.equal(action.kind, "poll");
  }
  assert.equal(m.phase, "watching");
  assert.equal(m.status().lastSuccessfulPollAt, undefined, "never answered: the health check says so");
});

Deno.test("machine: the status tells completed polls, polls without a permanent error, and the last error", () => {
  const m = machine({ targets: [A, B], startedAt: 5 });
  m.step(5);
  assert.deepEqual(
    [m.status().watchStartedAt, m.status().lastPollCompletedAt, m.status().lastPollWithoutPermanentErrorAt],
    [5, undefined, undefined],
  );
  m.step(10, [health(10, A, "healthy"), throttled(10, B)]);
  assert.equal(m.status().lastPollCompletedAt, 10);
  assert.equal(m.status().lastPollWithoutPermanentErrorAt, 10);
  m.step(20, [throttled(20, A)]);
  assert.equal(m.status().lastPollWithoutPermanentErrorAt, 20, "a transient error: AWS is there, just busy");
  m.step(30, [pollFailed(30, A, "AccessDenied", false), pollFailed(30, B, "TargetGroupNotFoundException", false)]);
  const status = m.status();
  assert.equal(status.lastPollCompletedAt, 30, "the loop is alive");
  assert.equal(status.lastPollWithoutPermanentErrorAt, 20, "permanent errors do not count");
  assert.deepEqual(status.lastPollError, {
    targetGroupArn: TG_B,
    code: "TargetGroupNotFoundException",
    transient: false,
    at: 30,
  });
  assert.equal(status.lastSuccessfulPollAt, undefined, "B never answered");
});

Deno.test("machine: lastSuccessfulPollAt is the oldest of the groups' last answers", () => {
  const m = machine({ targets: [A, B] });
  m.step(0);
  m.step(10, [health(10, A, "healthy")]);
  assert.equal(m.status().lastSuccessfulPollAt, undefined, "B has not answered yet");
  m.step(20, [health(20, B, "healthy")]);
  assert.equal(m.status().lastSuccessfulPollAt, 10);
  m.step(INTERVAL);
  m.step(INTERVAL + 10, [health(INTERVAL + 10, A, "healthy"), throttled(INTERVAL + 10, B)]);
  assert.equal(m.status().lastSuccessfulPollAt, 20, "B's last answer is the older one");
});

function connectionsMachine(quietPeriodMs = 5_000, deregistrationWaitMs = 120_000, drainFloorMs = 0): DrainMachine {
  const m = servingMachine({ drainMode: "connections", quietPeriodMs, deregistrationWaitMs, drainFloorMs });
  const step = m.step(10, [health(10, A, "draining", "Target.DeregistrationInProgress")]);
  assert.deepEqual(
    step.actions,
    [{ kind: "count-connections" }],
    "connections are counted as soon as the drain starts",
  );
  return m;
}
const connections = (at: number, established: number): Observation => ({ kind: "connections", at, established });

Deno.test("machine: connections mode finishes once no connection was seen for the quiet period", () => {
  const m = connectionsMachine();
  const busy = m.step(20, [connections(20, 3)]);
  assert.deepEqual(kinds(busy), ["connections-changed"]);
  assert.equal(busy.wakeAt, 1_020, "counted at least once a second");
  m.step(1_020);
  const idle = m.step(1_030, [connections(1_030, 0)]);
  assert.equal(idle.finished, undefined);
  assert.equal(idle.wakeAt, 2_030);
  // First seen quiet at 1_030: quiet until 6_030; samples are scheduled so that one lands exactly there.
  let now = 1_030;
  for (;;) {
    const step = m.step(now);
    if (step.actions.length > 0) {
      const result = m.step(now, [connections(now, 0)]);
      if (result.finished) {
        assert.deepEqual(result.finished, { reason: "connections-quiet", waitedMs: now - 10 });
        assert.equal(now, 6_030);
        break;
      }
      now = result.wakeAt;
    } else {
      now = step.wakeAt;
    }
    assert.ok(now <= 6_030, `overshot the quiet deadline: ${now}`);
  }
});

Deno.test("machine: a connection seen again restarts the quiet period", () => {
  const m = connectionsMachine(2_000);
  m.step(20, [connections(20, 0)]);
  m.step(520, [connections(520, 0)]);
  m.step(1_020, [connections(1_020, 1)]);
  const early = m.step(2_100, [connections(2_100, 0)]);
  assert.equal(early.finished, undefined, "quiet only since 2_100, the first count without a connection");
  assert.equal(early.wakeAt, 2_600);
  assert.equal(m.step(4_099, [connections(4_099, 0)]).finished, undefined);
  const done = m.step(4_100, [connections(4_100, 0)]);
  assert.equal(done.finished?.reason, "connections-quiet");
});

Deno.test("machine: connections mode still ends at the deregistration wait when connections stay open", () => {
  const m = connectionsMachine(1_000, 5_000);
  for (let at = 20; at < 5_010; at += 500) assert.equal(m.step(at, [connections(at, 2)]).finished, undefined);
  assert.deepEqual(m.step(5_010).finished, { reason: "drain-wait-elapsed", waitedMs: 5_000 });
});

Deno.test("machine: connections that cannot be counted fall back to the fixed wait", () => {
  const m = connectionsMachine(1_000, 5_000);
  const step = m.step(30, [{ kind: "connections-unavailable", at: 30, message: "gone" }]);
  assert.deepEqual(kinds(step), ["connections-unavailable"]);
  assert.ok(!step.actions.some((a) => a.kind === "count-connections"));
  assert.equal(m.step(4_000).finished, undefined);
  assert.equal(m.step(5_010).finished?.reason, "drain-wait-elapsed");
});

Deno.test("machine: fixed mode never counts connections", () => {
  const m = servingMachine();
  const step = m.step(5, [health(5, A, "draining")]);
  assert.ok(!step.actions.some((a) => a.kind === "count-connections"));
});

Deno.test("machine: a zero deregistration wait finishes in the step that sees draining", () => {
  const m = servingMachine({ deregistrationWaitMs: 0 });
  assert.equal(m.step(5, [health(5, A, "draining")]).finished?.reason, "drain-wait-elapsed");
});

Deno.test("machine: answers for targets that are not this task's are ignored", () => {
  const m = machine();
  m.step(0);
  const step = m.step(5, [{
    kind: "target-health",
    at: 5,
    targetGroupArn: TG_A,
    readings: [{ id: "10.0.9.9", port: 8080, state: "draining" }],
  }]);
  assert.deepEqual(kinds(step), []);
  assert.equal(m.phase, "watching");
});

Deno.test("machine: a draining target never seen serving is another task's drain on a reused IP: no drain, no finish", () => {
  const m = machine();
  m.step(0);
  const reused = m.step(5, [health(5, A, "draining", "Target.DeregistrationInProgress")]);
  assert.deepEqual(kinds(reused), ["draining-before-registration"]);
  assert.equal(m.phase, "watching", "the old task's drain is not this task's");
  assert.equal(m.step(200_000).finished, undefined, "no drain deadline runs");
  const oldGone = m.step(INTERVAL, [gone(INTERVAL, A)]);
  assert.equal(oldGone.finished, undefined, "the old task's registration ending does not end this task");
  m.step(2 * INTERVAL, [health(2 * INTERVAL, A, "initial", "Elb.RegistrationInProgress")]);
  m.step(3 * INTERVAL, [health(3 * INTERVAL, A, "healthy")]);
  const own = m.step(4 * INTERVAL, [health(4 * INTERVAL, A, "draining", "Target.DeregistrationInProgress")]);
  assert.deepEqual(kinds(own), ["drain-started"], "seen serving first: now a drain of this task");
});

Deno.test("machine: a drain whose target turns healthy again is cancelled; a later drain starts afresh", () => {
  const m = servingMachine();
  m.step(10, [health(10, A, "draining", "Target.DeregistrationInProgress")]);
  assert.equal(m.phase, "draining");
  const back = m.step(INTERVAL, [health(INTERVAL, A, "healthy")]);
  assert.deepEqual(back.events, [{
    kind: "drain-cancelled",
    target: A,
    state: "healthy",
    previousState: "draining",
    reason: undefined,
    description: undefined,
    drainedMs: INTERVAL - 10,
  }]);
  assert.equal(m.phase, "watching");
  assert.equal(m.status().drainDeadline, undefined);
  assert.equal(m.step(200_000).finished, undefined, "the cancelled drain's deadline is gone");
  const again = m.step(210_000, [health(210_000, A, "draining", "Target.DeregistrationInProgress")]);
  assert.deepEqual(kinds(again), ["drain-started"]);
  assert.equal(m.status().drainDeadline, 330_000);
});

Deno.test("machine: the drain-started event carries the wait, floor and quiet period the log reports", () => {
  const m = servingMachine({ drainMode: "connections", deregistrationWaitMs: 300_000, drainFloorMs: 120_000 });
  const started = m.step(10, [health(10, A, "draining", "Target.DeregistrationInProgress")]).events[0];
  assert.ok(started.kind === "drain-started");
  assert.deepEqual([started.waitMs, started.floorMs, started.quietPeriodMs], [300_000, 120_000, 5_000]);
  const fixed = servingMachine({ deregistrationWaitMs: 90_000, drainFloorMs: 120_000 });
  const plain = fixed.step(10, [health(10, A, "draining", "Target.DeregistrationInProgress")]).events[0];
  assert.ok(plain.kind === "drain-started");
  assert.deepEqual([plain.waitMs, plain.floorMs, plain.quietPeriodMs], [90_000, undefined, undefined]);
});

/** Answers every count of a connections drain with zero, from `from` on (a count is in flight), until it finishes. */
function drainWithNoConnections(m: DrainMachine, from: number): number {
  let now = from;
  let counting = true;
  for (let guard = 0; guard < 10_000; guard++) {
    const step = m.step(now, counting ? [connections(now, 0)] : []);
    if (step.finished) return now;
    counting = step.actions.some((a) => a.kind === "count-connections");
    if (!counting) now = step.wakeAt;
  }
  throw new Error("the drain never finished");
}

Deno.test("machine: connections mode never finishes before the floor, and counts the quiet period only after it", () => {
  const m = connectionsMachine(2_000, 300_000, 120_000);
  const finishedAt = drainWithNoConnections(m, 20);
  assert.equal(finishedAt, 10 + 120_000 + 2_000, "quiet from the floor on, not from the drain start");
  const busy = connectionsMachine(2_000, 300_000, 120_000);
  for (let at = 20; at < 125_000; at += 1_000) busy.step(at, [connections(at, 1)]);
  assert.equal(busy.phase, "draining");
  busy.step(125_000);
  assert.equal(drainWithNoConnections(busy, 125_000), 127_000, "after the floor, quiet counts as before");
});

Deno.test("machine: a floor longer than the cap holds the deadline until the floor", () => {
  const m = connectionsMachine(1_000, 30_000, 120_000);
  assert.equal(m.status().drainDeadline, 10 + 120_000);
  for (let at = 20; at < 120_010; at += 1_000) assert.equal(m.step(at, [connections(at, 2)]).finished, undefined);
  assert.deepEqual(m.step(120_010).finished, { reason: "drain-wait-elapsed", waitedMs: 120_000 });
});

Deno.test("effectiveDrainMode: connections only where the sidecar can see TCP connections", () => {
  const tcp = [{ protocol: "TCP" }, { protocol: "HTTPS" }];
  const cases: Array<[DrainMode, string, Array<{ protocol: string }>, DrainMode, boolean]> = [
    ["fixed", "awsvpc", tcp, "fixed", false],
    ["connections", "awsvpc", tcp, "connections", false],
    ["connections", "host", [{ protocol: "TLS" }, { protocol: "HTTP" }], "connections", false],
    ["connections", "bridge", tcp, "fixed", true],
    ["connections", "awsvpc", [{ protocol: "TCP" }, { protocol: "UDP" }], "fixed", true],
    ["connections", "host", [{ protocol: "TCP_UDP" }], "fixed", true],
  ];
  for (const [requested, networkMode, targets, mode, fallback] of cases) {
    const result = effectiveDrainMode(requested, { networkMode, targets });
    assert.equal(result.mode, mode, `${requested} ${networkMode} ${JSON.stringify(targets)}`);
    assert.equal(result.fallback !== undefined, fallback);
  }
});
