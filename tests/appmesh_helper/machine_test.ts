import assert from "node:assert/strict";
import {
  type Action,
  type AppCheckResult,
  type EnvoyReading,
  type IngressCount,
  ShutdownMachine,
  type ShutdownPlan,
} from "../../lib/appmesh_helper/machine.ts";

const T0 = 1_000_000;

function plan(overrides: Partial<ShutdownPlan> = {}): ShutdownPlan {
  return {
    drainDelayMs: 40_000,
    drainTimeoutMs: 40_000,
    mode: "fixed",
    quietPeriodMs: 3_000,
    pollIntervalMs: 500,
    appCheck: false,
    ...overrides,
  };
}

/** Drives a machine in connections mode through a fail call, then feeds counts at the given times. */
function throughFail(machine: ShutdownMachine): number {
  const wait = machine.start();
  assert.deepEqual(wait, { kind: "wait", untilMs: machine.failAt, purpose: "drain-delay" });
  const fail = machine.step(machine.failAt, { kind: "waited" });
  assert.equal(fail.kind, "fail-envoy");
  return machine.failAt;
}

/** When the first Envoy process started, on the wall clock: a second wide, as its uptime in whole seconds gives it. */
const ENVOY_STARTED = { earliestMs: 1_800_000_000_000, latestMs: 1_800_000_001_000 };

/** An Envoy process started `ms` after the first one. */
function startedLater(ms: number): EnvoyReading["started"] {
  return { earliestMs: ENVOY_STARTED.earliestMs + ms, latestMs: ENVOY_STARTED.latestMs + ms };
}

/** A read of a failed Envoy (not LIVE, the first process, no listener stopped), with the given ingress counters. */
function reading(ingress: IngressCount | undefined, overrides: Partial<EnvoyReading> = {}): EnvoyReading {
  return { live: false, started: ENVOY_STARTED, listenersStopped: 0, ingress, ...overrides };
}

/** Feeds one read of the counters: `active` open connections (`undefined`: no such listener), `accepted` ever. */
function countAt(machine: ShutdownMachine, active: number | undefined, now: number, accepted = 10): Action {
  const count = active === undefined ? undefined : { active, accepted };
  return machine.step(now, { kind: "envoy-read", reading: reading(count) });
}

Deno.test("fixed mode: wait DRAIN_DELAY, fail Envoy, wait until DRAIN_DELAY + DRAIN_TIMEOUT, exit", () => {
  const machine = new ShutdownMachine(plan(), T0);
  assert.deepEqual(machine.start(), { kind: "wait", untilMs: T0 + 40_000, purpose: "drain-delay" });
  assert.deepEqual(machine.step(T0 + 40_000, { kind: "waited" }), {
    kind: "fail-envoy",
    drainListeners: false,
    deadlineMs: T0 + 80_000,
    cause: "drain-delay-over",
  });
  assert.deepEqual(machine.step(T0 + 40_050, { kind: "envoy-failed", accepted: true }), {
    kind: "wait",
    untilMs: T0 + 40_550,
    purpose: "drain-timeout",
  });
  assert.equal(machine.envoyAccepted, true);
  // Envoy is read every poll interval (a restart must be noticed); a failed Envoy keeps the drain as it is.
  let now = T0 + 40_550;
  while (now < T0 + 80_000) {
    assert.deepEqual(machine.step(now, { kind: "waited" }), { kind: "read-envoy", deadlineMs: T0 + 80_000 });
    const next = machine.step(now, { kind: "envoy-read", reading: now % 2000 === 0 ? undefined : reading(undefined) });
    assert.deepEqual(next, { kind: "wait", untilMs: Math.min(now + 500, T0 + 80_000), purpose: "poll" });
    now = Math.min(now + 500, T0 + 80_000);
  }
  assert.deepEqual(machine.step(T0 + 80_000, { kind: "waited" }), { kind: "exit", reason: "drain-timeout" });
  assert.equal(machine.restarts, 0);
});

Deno.test("an Envoy LIVE again mid-drain, or started again, is failed again; the deadline stays", () => {
  for (const mode of ["fixed", "connections"] as const) {
    const machine = new ShutdownMachine(plan({ mode }), T0);
    const failedAt = throughFail(machine);
    let action = machine.step(failedAt, { kind: "envoy-failed", accepted: true });
    if (action.kind === "wait") action = machine.step(failedAt + 500, { kind: "waited" });
    assert.equal(action.kind, "read-envoy", mode);
    const quiet = { active: 1, accepted: 5 };
    assert.equal(machine.step(failedAt + 500, { kind: "envoy-read", reading: reading(quiet) }).kind, "wait", mode);
    machine.step(failedAt + 1_000, { kind: "waited" });
    // The agent restarted Envoy: a new process, LIVE, its health check passing.
    const live = reading({ active: 0, accepted: 0 }, { live: true, started: startedLater(60_000) });
    assert.deepEqual(machine.step(failedAt + 1_000, { kind: "envoy-read", reading: live }), {
      kind: "fail-envoy",
      drainListeners: mode === "connections",
      deadlineMs: T0 + 80_000,
      cause: "envoy-restarted",
    }, mode);
    assert.equal(machine.restarts, 1);
    action = machine.step(failedAt + 1_100, { kind: "envoy-failed", accepted: true });
    if (action.kind === "wait") {
      assert.equal(action.purpose, "poll", "DRAIN_TIMEOUT's wait is logged once, not after each restart");
      action = machine.step(failedAt + 1_600, { kind: "waited" });
    }
    assert.equal(action.kind, "read-envoy");
    // Restarted again while still initializing (not LIVE): only its start tells.
    const initializing = reading({ active: 0, accepted: 0 }, { started: startedLater(61_500) });
    assert.equal(machine.step(failedAt + 1_600, { kind: "envoy-read", reading: initializing }).kind, "fail-envoy");
    assert.equal(machine.restarts, 2);
  }
});

Deno.test("an Envoy whose start every read bounds alike is the same process, its uptime stepped or not", () => {
  const machine = new ShutdownMachine(plan({ mode: "fixed" }), T0);
  const failedAt = throughFail(machine);
  let now = failedAt;
  let action = machine.step(now, { kind: "envoy-failed", accepted: true });
  const { earliestMs, latestMs } = ENVOY_STARTED;
  // An hour's step while a read was under way widens the bounds (forward), or makes them cross (back).
  const steppedForward = { earliestMs: earliestMs - 3_600_000, latestMs };
  const steppedBack = { earliestMs: earliestMs + 3_600_000, latestMs };
  for (const started of [ENVOY_STARTED, startedLater(900), steppedForward, steppedBack, ENVOY_STARTED]) {
    assert.equal(action.kind, "wait");
    now += 500;
    assert.equal(machine.step(now, { kind: "waited" }).kind, "read-envoy");
    action = machine.step(now, { kind: "envoy-read", reading: reading(undefined, { started }) });
  }
  assert.equal(action.kind, "wait", JSON.stringify(action));
  assert.equal(machine.restarts, 0);
});

Deno.test("an Envoy that did not take the fail call and is LIVE later (it was down) is failed then", () => {
  const machine = new ShutdownMachine(plan(), T0);
  const failedAt = throughFail(machine);
  machine.step(failedAt + 5_000, { kind: "envoy-failed", accepted: false });
  machine.step(failedAt + 5_500, { kind: "waited" });
  assert.equal(machine.step(failedAt + 5_500, { kind: "envoy-read", reading: undefined }).kind, "wait");
  machine.step(failedAt + 6_000, { kind: "waited" });
  const up = reading(undefined, { live: true });
  const again = machine.step(failedAt + 6_000, { kind: "envoy-read", reading: up });
  assert.equal(again.kind, "fail-envoy");
  assert.equal(again.kind === "fail-envoy" && again.cause, "envoy-not-yet-failed", "never failed, so not a restart");
  assert.equal(machine.restarts, 0, "an Envoy that refused the fail call was not restarted");
});

Deno.test("the deadline is anchored to the signal, so slow fail retries do not push the exit later", () => {
  const machine = new ShutdownMachine(plan({ drainDelayMs: 1_000, drainTimeoutMs: 2_000 }), T0);
  machine.start();
  machine.step(T0 + 1_000, { kind: "waited" });
  const hold = machine.step(T0 + 2_800, { kind: "envoy-failed", accepted: false });
  assert.deepEqual(hold, { kind: "wait", untilMs: T0 + 3_000, purpose: "drain-timeout" });
  assert.equal(machine.envoyAccepted, false, "an Envoy that did not answer is remembered for the exit line");
});

Deno.test("app configured and refusing connections: exit at once, Envoy is never told", () => {
  const machine = new ShutdownMachine(plan({ appCheck: true }), T0);
  assert.deepEqual(machine.start(), { kind: "check-app" });
  assert.deepEqual(machine.step(T0 + 5, { kind: "app-checked", result: "refused" }), {
    kind: "exit",
    reason: "app-gone",
  });
});

Deno.test("app configured and answering (any status): the drain goes on as usual", () => {
  const machine = new ShutdownMachine(plan({ appCheck: true }), T0);
  machine.start();
  assert.deepEqual(machine.step(T0 + 5, { kind: "app-checked", result: "answered" }), {
    kind: "wait",
    untilMs: T0 + 40_000,
    purpose: "drain-delay",
  });
});

Deno.test("app silent past the timeout: one confirming check, and only a second timeout (or a refusal) means gone", () => {
  const outcomes: Record<AppCheckResult, Action["kind"]> = {
    "timed-out": "exit",
    refused: "exit",
    answered: "wait",
    failed: "wait",
  };
  for (const [second, expected] of Object.entries(outcomes) as Array<[AppCheckResult, Action["kind"]]>) {
    const machine = new ShutdownMachine(plan({ appCheck: true }), T0);
    machine.start();
    assert.deepEqual(machine.step(T0 + 2_000, { kind: "app-checked", result: "timed-out" }), { kind: "check-app" });
    const next = machine.step(T0 + 4_000, { kind: "app-checked", result: second });
    assert.equal(next.kind, expected, `timed out, then ${second}`);
    if (next.kind === "exit") assert.equal(next.reason, "app-gone");
    if (next.kind === "wait") assert.deepEqual(next, { kind: "wait", untilMs: T0 + 40_000, purpose: "drain-delay" });
  }
});

Deno.test("app check failed by DNS, TLS or a reset: the app may still serve, so the drain goes on", () => {
  const machine = new ShutdownMachine(plan({ appCheck: true }), T0);
  machine.start();
  assert.deepEqual(machine.step(T0 + 5, { kind: "app-checked", result: "failed" }), {
    kind: "wait",
    untilMs: T0 + 40_000,
    purpose: "drain-delay",
  });
  assert.throws(
    () => machine.step(T0 + 10, { kind: "app-checked", result: "timed-out" }),
    /expected phase checking-app/,
    "no confirming check after a failure that is not a timeout",
  );
});

Deno.test("connections mode: drains listeners and exits once the count stayed zero for the quiet period", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections" }), T0);
  machine.start();
  assert.deepEqual(machine.step(T0 + 40_000, { kind: "waited" }), {
    kind: "fail-envoy",
    drainListeners: true,
    deadlineMs: T0 + 80_000,
    cause: "drain-delay-over",
  });
  const failedAt = T0 + 40_010;
  assert.deepEqual(machine.step(failedAt, { kind: "envoy-failed", accepted: true }), {
    kind: "read-envoy",
    deadlineMs: T0 + 80_000,
  });
  assert.deepEqual(countAt(machine, 4, failedAt), { kind: "wait", untilMs: failedAt + 500, purpose: "poll" });
  assert.equal(machine.connectionsLeft, 4);
  assert.deepEqual(machine.step(failedAt + 500, { kind: "waited" }), {
    kind: "read-envoy",
    deadlineMs: T0 + 80_000,
  });
  const zeroAt = failedAt + 500;
  assert.deepEqual(countAt(machine, 0, zeroAt), { kind: "wait", untilMs: zeroAt + 500, purpose: "poll" });
  machine.step(zeroAt + 500, { kind: "waited" });
  countAt(machine, 0, zeroAt + 500);
  machine.step(zeroAt + 2_500, { kind: "waited" });
  // The last poll before the quiet period ends is cut short so the exit lands on time.
  assert.deepEqual(countAt(machine, 0, zeroAt + 2_500), { kind: "wait", untilMs: zeroAt + 3_000, purpose: "poll" });
  machine.step(zeroAt + 3_000, { kind: "waited" });
  assert.deepEqual(countAt(machine, 0, zeroAt + 3_000), { kind: "exit", reason: "connections-drained" });
  assert.equal(machine.connectionsLeft, 0);
});

Deno.test("connections mode: a connection that reappears restarts the quiet period", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 1_000 }), T0);
  const failedAt = throughFail(machine);
  machine.step(failedAt, { kind: "envoy-failed", accepted: true });
  countAt(machine, 0, failedAt);
  machine.step(failedAt + 500, { kind: "waited" });
  countAt(machine, 1, failedAt + 500);
  machine.step(failedAt + 1_000, { kind: "waited" });
  assert.equal(countAt(machine, 0, failedAt + 1_000).kind, "wait", "quiet since 1_000, not since 0");
  machine.step(failedAt + 1_500, { kind: "waited" });
  assert.equal(countAt(machine, 0, failedAt + 1_500).kind, "wait");
  machine.step(failedAt + 2_000, { kind: "waited" });
  assert.deepEqual(countAt(machine, 0, failedAt + 2_000), { kind: "exit", reason: "connections-drained" });
});

Deno.test("connections mode: connections that open and close between two reads hold off the quiet period", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 1_000 }), T0);
  const failedAt = throughFail(machine);
  machine.step(failedAt, { kind: "envoy-failed", accepted: true });
  // Every read sees no open connection, but the accepted count moves: requests are still arriving.
  let now = failedAt;
  let accepted = 100;
  assert.equal(countAt(machine, 0, now, accepted).kind, "wait");
  for (let read = 1; read <= 8; read++) {
    now += 500;
    accepted += 2;
    machine.step(now, { kind: "waited" });
    const action = countAt(machine, 0, now, accepted);
    assert.equal(action.kind, "wait", `read ${read}: ${accepted} accepted, the drain must go on`);
  }
  assert.equal(machine.connectionsLeft, 0);
  // The arrivals stop: nothing has been accepted since the read at `now`, so the quiet period runs from it.
  machine.step(now + 500, { kind: "waited" });
  assert.deepEqual(countAt(machine, 0, now + 500, accepted), { kind: "wait", untilMs: now + 1_000, purpose: "poll" });
  machine.step(now + 1_000, { kind: "waited" });
  assert.deepEqual(countAt(machine, 0, now + 1_000, accepted), { kind: "exit", reason: "connections-drained" });
});

Deno.test("connections mode: an unreadable Envoy never counts as quiet", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 500, drainTimeoutMs: 3_000 }), T0);
  const failedAt = throughFail(machine);
  machine.step(failedAt, { kind: "envoy-failed", accepted: true });
  let now = failedAt;
  let action = countAt(machine, 0, now);
  for (const count of [undefined, 0, undefined, 0, undefined]) {
    now += 500;
    assert.equal(action.kind, "wait");
    action = machine.step(now, { kind: "waited" });
    assert.equal(action.kind, "read-envoy");
    action = count === undefined
      ? machine.step(now, { kind: "envoy-read", reading: undefined })
      : countAt(machine, count, now);
    assert.equal(action.kind, "wait", `at +${now - failedAt} ms a count of ${count} must not end the drain`);
  }
  assert.equal(machine.connectionsLeft, undefined);
  assert.equal(machine.holdReason, undefined, "a failed read is not a sign that the listener refuses");
});

Deno.test("connections mode: a listener Envoy stopped, or whose stats are gone, holds the drain to the deadline", () => {
  for (const gone of ["listener-stopped", "listener-stats-gone"] as const) {
    const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 500, drainTimeoutMs: 5_000 }), T0);
    const failedAt = throughFail(machine);
    machine.step(failedAt, { kind: "envoy-failed", accepted: true });
    const before = reading({ active: 2, accepted: 7 }, { listenersStopped: 1 });
    assert.equal(machine.step(failedAt, { kind: "envoy-read", reading: before }).kind, "wait");
    assert.equal(machine.holdReason, undefined, "a listener stopped before the drain says nothing about this one");
    // From here every read looks quiet: nothing open, nothing accepted, because nothing can connect.
    const after = gone === "listener-stopped"
      ? reading({ active: 0, accepted: 7 }, { listenersStopped: 2 })
      : reading(undefined, { listenersStopped: 1 });
    let now = failedAt + 500;
    let action = machine.step(now, { kind: "waited" });
    while (action.kind === "read-envoy") {
      assert.equal(machine.step(now, { kind: "envoy-read", reading: after }).kind, "wait", `${gone} at ${now}`);
      assert.equal(machine.holdReason, gone);
      now += 500;
      action = machine.step(now, { kind: "waited" });
    }
    assert.deepEqual(action, { kind: "exit", reason: "drain-timeout" }, gone);
    assert.equal(now, machine.deadline, `${gone}: held to the deadline, not ended by the lull`);
  }
});

Deno.test("connections mode: connections that never close end the drain at the deadline, not later", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", drainDelayMs: 1_000, drainTimeoutMs: 1_200 }), T0);
  const failedAt = throughFail(machine);
  assert.equal(machine.deadline, T0 + 2_200);
  machine.step(failedAt, { kind: "envoy-failed", accepted: true });
  assert.deepEqual(countAt(machine, 3, failedAt), { kind: "wait", untilMs: failedAt + 500, purpose: "poll" });
  machine.step(failedAt + 500, { kind: "waited" });
  assert.deepEqual(countAt(machine, 3, failedAt + 1_000), { kind: "wait", untilMs: T0 + 2_200, purpose: "poll" });
  assert.deepEqual(machine.step(T0 + 2_200, { kind: "waited" }), { kind: "exit", reason: "drain-timeout" });
});

Deno.test("connections mode: a fail call that took until the deadline exits without counting", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", drainDelayMs: 0, drainTimeoutMs: 1_000 }), T0);
  throughFail(machine);
  assert.deepEqual(machine.step(T0 + 1_000, { kind: "envoy-failed", accepted: true }), {
    kind: "exit",
    reason: "drain-timeout",
  });
});

Deno.test("connections mode: when Envoy did not take the fail call, the drain waits the whole DRAIN_TIMEOUT", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections" }), T0);
  const failedAt = throughFail(machine);
  assert.deepEqual(machine.step(failedAt + 5_000, { kind: "envoy-failed", accepted: false }), {
    kind: "wait",
    untilMs: failedAt + 5_500,
    purpose: "drain-timeout",
  });
  // Its reads show no connection at all, and still do not end the drain: downstreams were never told.
  for (let now = failedAt + 5_500; now < T0 + 80_000; now += 500) {
    machine.step(now, { kind: "waited" });
    assert.equal(countAt(machine, 0, now, 0).kind, "wait");
  }
  assert.deepEqual(machine.step(T0 + 80_000, { kind: "waited" }), { kind: "exit", reason: "drain-timeout" });
});

Deno.test("a quiet period of zero exits on the first zero count", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 0 }), T0);
  const failedAt = throughFail(machine);
  machine.step(failedAt, { kind: "envoy-failed", accepted: true });
  assert.deepEqual(countAt(machine, 0, failedAt + 1), { kind: "exit", reason: "connections-drained" });
});

Deno.test("observations out of order are programming errors, not silent state changes", () => {
  const machine = new ShutdownMachine(plan(), T0);
  assert.throws(() => machine.step(T0, { kind: "envoy-failed", accepted: true }), /expected phase failing/);
  machine.start();
  assert.throws(() => machine.start(), /expected phase start/);
  assert.throws(() => machine.step(T0, { kind: "app-checked", result: "answered" }), /expected phase checking-app/);
  machine.step(T0 + 40_000, { kind: "waited" });
  assert.throws(() => machine.step(T0 + 40_001, { kind: "waited" }), /not expected in phase failing/);
});
