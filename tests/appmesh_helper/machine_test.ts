import assert from "node:assert/strict";
import {
  type Action,
  type AppCheckResult,
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
  const fail = machine.next({ kind: "waited" }, machine.failAt);
  assert.equal(fail.kind, "fail-envoy");
  return machine.failAt;
}

/** Feeds one read of the counters: `active` open connections (`undefined`: unknown), `accepted` ever. */
function countAt(machine: ShutdownMachine, active: number | undefined, now: number, accepted = 10): Action {
  const count = active === undefined ? undefined : { active, accepted };
  return machine.next({ kind: "connections-counted", count }, now);
}

Deno.test("fixed mode: wait DRAIN_DELAY, fail Envoy, wait until DRAIN_DELAY + DRAIN_TIMEOUT, exit", () => {
  const machine = new ShutdownMachine(plan(), T0);
  assert.deepEqual(machine.start(), { kind: "wait", untilMs: T0 + 40_000, purpose: "drain-delay" });
  assert.deepEqual(machine.next({ kind: "waited" }, T0 + 40_000), {
    kind: "fail-envoy",
    drainListeners: false,
    deadlineMs: T0 + 80_000,
  });
  assert.deepEqual(machine.next({ kind: "envoy-failed", accepted: true }, T0 + 40_050), {
    kind: "wait",
    untilMs: T0 + 80_000,
    purpose: "drain-timeout",
  });
  assert.equal(machine.envoyAccepted, true);
  assert.deepEqual(machine.next({ kind: "waited" }, T0 + 80_000), { kind: "exit", reason: "drain-timeout" });
});

Deno.test("the deadline is anchored to the signal, so slow fail retries do not push the exit later", () => {
  const machine = new ShutdownMachine(plan({ drainDelayMs: 1_000, drainTimeoutMs: 2_000 }), T0);
  machine.start();
  machine.next({ kind: "waited" }, T0 + 1_000);
  const hold = machine.next({ kind: "envoy-failed", accepted: false }, T0 + 2_500);
  assert.deepEqual(hold, { kind: "wait", untilMs: T0 + 3_000, purpose: "drain-timeout" });
  assert.equal(machine.envoyAccepted, false, "an Envoy that did not answer is remembered for the exit line");
});

Deno.test("app configured and refusing connections: exit at once, Envoy is never told", () => {
  const machine = new ShutdownMachine(plan({ appCheck: true }), T0);
  assert.deepEqual(machine.start(), { kind: "check-app" });
  assert.deepEqual(machine.next({ kind: "app-checked", result: "refused" }, T0 + 5), {
    kind: "exit",
    reason: "app-gone",
  });
});

Deno.test("app configured and answering (any status): the drain goes on as usual", () => {
  const machine = new ShutdownMachine(plan({ appCheck: true }), T0);
  machine.start();
  assert.deepEqual(machine.next({ kind: "app-checked", result: "answered" }, T0 + 5), {
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
    assert.deepEqual(machine.next({ kind: "app-checked", result: "timed-out" }, T0 + 2_000), { kind: "check-app" });
    const next = machine.next({ kind: "app-checked", result: second }, T0 + 4_000);
    assert.equal(next.kind, expected, `timed out, then ${second}`);
    if (next.kind === "exit") assert.equal(next.reason, "app-gone");
    if (next.kind === "wait") assert.deepEqual(next, { kind: "wait", untilMs: T0 + 40_000, purpose: "drain-delay" });
  }
});

Deno.test("app check failed by DNS, TLS or a reset: the app may still serve, so the drain goes on", () => {
  const machine = new ShutdownMachine(plan({ appCheck: true }), T0);
  machine.start();
  assert.deepEqual(machine.next({ kind: "app-checked", result: "failed" }, T0 + 5), {
    kind: "wait",
    untilMs: T0 + 40_000,
    purpose: "drain-delay",
  });
  assert.throws(
    () => machine.next({ kind: "app-checked", result: "timed-out" }, T0 + 10),
    /expected phase checking-app/,
    "no confirming check after a failure that is not a timeout",
  );
});

Deno.test("connections mode: drains listeners and exits once the count stayed zero for the quiet period", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections" }), T0);
  machine.start();
  assert.deepEqual(machine.next({ kind: "waited" }, T0 + 40_000), {
    kind: "fail-envoy",
    drainListeners: true,
    deadlineMs: T0 + 80_000,
  });
  const failedAt = T0 + 40_010;
  assert.deepEqual(machine.next({ kind: "envoy-failed", accepted: true }, failedAt), {
    kind: "count-connections",
    deadlineMs: T0 + 80_000,
  });
  assert.deepEqual(countAt(machine, 4, failedAt), { kind: "wait", untilMs: failedAt + 500, purpose: "poll" });
  assert.equal(machine.connectionsLeft, 4);
  assert.deepEqual(machine.next({ kind: "waited" }, failedAt + 500), {
    kind: "count-connections",
    deadlineMs: T0 + 80_000,
  });
  const zeroAt = failedAt + 500;
  assert.deepEqual(countAt(machine, 0, zeroAt), { kind: "wait", untilMs: zeroAt + 500, purpose: "poll" });
  machine.next({ kind: "waited" }, zeroAt + 500);
  countAt(machine, 0, zeroAt + 500);
  machine.next({ kind: "waited" }, zeroAt + 2_500);
  // The last poll before the quiet period ends is cut short so the exit lands on time.
  assert.deepEqual(countAt(machine, 0, zeroAt + 2_500), { kind: "wait", untilMs: zeroAt + 3_000, purpose: "poll" });
  machine.next({ kind: "waited" }, zeroAt + 3_000);
  assert.deepEqual(countAt(machine, 0, zeroAt + 3_000), { kind: "exit", reason: "connections-drained" });
  assert.equal(machine.connectionsLeft, 0);
});

Deno.test("connections mode: a connection that reappears restarts the quiet period", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 1_000 }), T0);
  const failedAt = throughFail(machine);
  machine.next({ kind: "envoy-failed", accepted: true }, failedAt);
  countAt(machine, 0, failedAt);
  machine.next({ kind: "waited" }, failedAt + 500);
  countAt(machine, 1, failedAt + 500);
  machine.next({ kind: "waited" }, failedAt + 1_000);
  assert.equal(countAt(machine, 0, failedAt + 1_000).kind, "wait", "quiet since 1_000, not since 0");
  machine.next({ kind: "waited" }, failedAt + 1_500);
  assert.equal(countAt(machine, 0, failedAt + 1_500).kind, "wait");
  machine.next({ kind: "waited" }, failedAt + 2_000);
  assert.deepEqual(countAt(machine, 0, failedAt + 2_000), { kind: "exit", reason: "connections-drained" });
});

Deno.test("connections mode: connections that open and close between two reads hold off the quiet period", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 1_000 }), T0);
  const failedAt = throughFail(machine);
  machine.next({ kind: "envoy-failed", accepted: true }, failedAt);
  // Every read sees no open connection, but the accepted count moves: requests are still arriving.
  let now = failedAt;
  let accepted = 100;
  assert.equal(countAt(machine, 0, now, accepted).kind, "wait");
  for (let read = 1; read <= 8; read++) {
    now += 500;
    accepted += 2;
    machine.next({ kind: "waited" }, now);
    const action = countAt(machine, 0, now, accepted);
    assert.equal(action.kind, "wait", `read ${read}: ${accepted} accepted, the drain must go on`);
  }
  assert.equal(machine.connectionsLeft, 0);
  // The arrivals stop: nothing has been accepted since the read at `now`, so the quiet period runs from it.
  machine.next({ kind: "waited" }, now + 500);
  assert.deepEqual(countAt(machine, 0, now + 500, accepted), { kind: "wait", untilMs: now + 1_000, purpose: "poll" });
  machine.next({ kind: "waited" }, now + 1_000);
  assert.deepEqual(countAt(machine, 0, now + 1_000, accepted), { kind: "exit", reason: "connections-drained" });
});

Deno.test("connections mode: an unknown count (Envoy down, no such listener) never counts as quiet", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 500, drainTimeoutMs: 3_000 }), T0);
  const failedAt = throughFail(machine);
  machine.next({ kind: "envoy-failed", accepted: true }, failedAt);
  let now = failedAt;
  let action = countAt(machine, 0, now);
  for (const count of [undefined, 0, undefined, 0, undefined]) {
    now += 500;
    assert.equal(action.kind, "wait");
    action = machine.next({ kind: "waited" }, now);
    assert.equal(action.kind, "count-connections");
    action = countAt(machine, count, now);
    assert.equal(action.kind, "wait", `at +${now - failedAt} ms a count of ${count} must not end the drain`);
  }
  assert.equal(machine.connectionsLeft, undefined);
});

Deno.test("connections mode: connections that never close end the drain at the deadline, not later", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", drainDelayMs: 1_000, drainTimeoutMs: 1_200 }), T0);
  const failedAt = throughFail(machine);
  assert.equal(machine.deadline, T0 + 2_200);
  machine.next({ kind: "envoy-failed", accepted: true }, failedAt);
  assert.deepEqual(countAt(machine, 3, failedAt), { kind: "wait", untilMs: failedAt + 500, purpose: "poll" });
  machine.next({ kind: "waited" }, failedAt + 500);
  assert.deepEqual(countAt(machine, 3, failedAt + 1_000), { kind: "wait", untilMs: T0 + 2_200, purpose: "poll" });
  assert.deepEqual(machine.next({ kind: "waited" }, T0 + 2_200), { kind: "exit", reason: "drain-timeout" });
});

Deno.test("connections mode: a fail call that took until the deadline exits without counting", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", drainDelayMs: 0, drainTimeoutMs: 1_000 }), T0);
  throughFail(machine);
  assert.deepEqual(machine.next({ kind: "envoy-failed", accepted: true }, T0 + 1_000), {
    kind: "exit",
    reason: "drain-timeout",
  });
});

Deno.test("connections mode: when Envoy did not take the fail call, the drain waits the whole DRAIN_TIMEOUT", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections" }), T0);
  const failedAt = throughFail(machine);
  assert.deepEqual(machine.next({ kind: "envoy-failed", accepted: false }, failedAt + 5_000), {
    kind: "wait",
    untilMs: T0 + 80_000,
    purpose: "drain-timeout",
  });
  assert.deepEqual(machine.next({ kind: "waited" }, T0 + 80_000), { kind: "exit", reason: "drain-timeout" });
});

Deno.test("a quiet period of zero exits on the first zero count", () => {
  const machine = new ShutdownMachine(plan({ mode: "connections", quietPeriodMs: 0 }), T0);
  const failedAt = throughFail(machine);
  machine.next({ kind: "envoy-failed", accepted: true }, failedAt);
  assert.deepEqual(countAt(machine, 0, failedAt + 1), { kind: "exit", reason: "connections-drained" });
});

Deno.test("observations out of order are programming errors, not silent state changes", () => {
  const machine = new ShutdownMachine(plan(), T0);
  assert.throws(() => machine.next({ kind: "envoy-failed", accepted: true }, T0), /expected phase failing/);
  machine.start();
  assert.throws(() => machine.start(), /expected phase start/);
  assert.throws(() => machine.next({ kind: "app-checked", result: "answered" }, T0), /expected phase checking-app/);
  machine.next({ kind: "waited" }, T0 + 40_000);
  assert.throws(() => machine.next({ kind: "waited" }, T0 + 40_001), /not expected in phase failing/);
});
