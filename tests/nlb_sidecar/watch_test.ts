/**
 * The watch: DescribeTargetHealth through the real ELBv2 client against the emulator, and the watch loop
 * driving it, with fast intervals, under throttling, 5xx bursts and a target group deleted mid-run.
 */
import assert from "node:assert/strict";
import type { MachineStatus } from "../../lib/nlb_sidecar/machine.ts";
import { MAX_SLOWDOWN } from "../../lib/nlb_sidecar/pacing.ts";
import { describeTargetHealth, pollError } from "../../lib/nlb_sidecar/target_health.ts";
import { type WatchOptions, type WatchOutcome, watchTargets } from "../../lib/nlb_sidecar/watch.ts";
import { TYPICAL_HEALTH } from "../../sim/elbv2.ts";
import { type EcsWorld, startEcsWorld, type WorldOptions } from "../../sim/ecs_world.ts";
import { Faults, seededRandom } from "../../sim/faults.ts";
import { steppableWallClock } from "../../sim/wall_clock.ts";
import { byTaskKind, captureLog, discoverIn, TARGET_CASES, targetCaseWorld } from "./support.ts";

async function planFor(world: EcsWorld) {
  const { plan, clients } = await discoverIn(world);
  return { targets: plan.targets, elbv2: clients.elbv2 };
}

Deno.test("describeTargetHealth: every ELB state and reason reaches the machine as ELB sent it", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  const { targets, elbv2 } = await planFor(world);
  const [target] = targets;
  for (const state of Object.keys(TYPICAL_HEALTH) as Array<keyof typeof TYPICAL_HEALTH>) {
    world.setState(state);
    const readings = await describeTargetHealth(elbv2, target.targetGroupArn, [target]);
    assert.deepEqual(readings, [{
      id: target.id,
      port: target.port,
      state,
      reason: TYPICAL_HEALTH[state].Reason,
      description: TYPICAL_HEALTH[state].Description,
    }]);
  }
});

Deno.test("describeTargetHealth: errors classify as ELB means them", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  const { targets, elbv2 } = await planFor(world);
  const [target] = targets;
  const failureOf = async () => {
    try {
      await describeTargetHealth(elbv2, target.targetGroupArn, [target]);
    } catch (error) {
      return pollError(error);
    }
    assert.fail("expected an error");
  };
  world.elbv2.faults.failNext(1, "throttle");
  assert.deepEqual(await failureOf(), { code: "Throttling", message: "Rate exceeded", transient: true });
  world.elbv2.faults.failNext(1, "server-error");
  assert.equal((await failureOf()).transient, true);
  world.elbv2.state.denied.add("DescribeTargetHealth");
  const denied = await failureOf();
  assert.equal(denied.code, "AccessDenied");
  assert.equal(denied.transient, false);
  world.elbv2.state.denied.clear();
  world.elbv2.state.deleteTargetGroup(target.targetGroupArn);
  const deleted = await failureOf();
  assert.equal(deleted.code, "TargetGroupNotFoundException");
  assert.equal(deleted.transient, false);
});

interface Watch extends AsyncDisposable {
  readonly world: EcsWorld;
  readonly outcome: Promise<WatchOutcome>;
  readonly lines: Array<Record<string, unknown>>;
  readonly statuses: MachineStatus[];
  readonly controller: AbortController;
  waitFor(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

async function watch(
  worldOptions: WorldOptions,
  options: Partial<Omit<WatchOptions, "targets" | "elbv2" | "log" | "signal">> = {},
): Promise<Watch> {
  const world = await startEcsWorld(worldOptions);
  const { targets, elbv2 } = await planFor(world);
  const { log, lines } = captureLog();
  const controller = new AbortController();
  const statuses: MachineStatus[] = [];
  const outcome = watchTargets({
    targets,
    elbv2,
    drainMode: "fixed",
    pollIntervalMs: 50,
    deregistrationWaitMs: 200,
    quietPeriodMs: 100,
    log,
    signal: controller.signal,
    onStatus: (status) => Promise.resolve(void statuses.push(status)),
    random: seededRandom(7),
    ...options,
  });
  return {
    world,
    outcome,
    lines,
    statuses,
    controller,
    async [Symbol.asyncDispose]() {
      controller.abort("test over");
      await outcome;
      await world.close();
    },
    async waitFor(predicate, timeoutMs = 5_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const line = lines.find(predicate);
        if (line) return line;
        if (Date.now() > until) {
          assert.fail(`no such log line; got:\n${lines.map((l) => JSON.stringify(l)).join("\n")}`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}

const message = (text: string) => (line: Record<string, unknown>) => String(line.message).includes(text);

Deno.test("watch: healthy, then draining, then exit after the deregistration wait; one log line per change", async () => {
  await using w = await watch({ networkMode: "awsvpc" });
  await w.waitFor(message("is healthy"));
  w.world.setState("draining");
  const started = await w.waitFor(message("drain started"));
  assert.equal(started.targetGroup, "web-0");
  assert.equal(started.target, "10.0.1.23:8080");
  assert.equal(started.state, "draining");
  assert.equal(started.previousState, "healthy");
  assert.equal(started.reason, "Target.DeregistrationInProgress");
  assert.equal(started.description, "Target deregistration is in progress");
  assert.equal(started.mode, "fixed");
  assert.equal(started.waitSeconds, 0.2);
  const outcome = await w.outcome;
  assert.equal(outcome.kind, "finished");
  assert.equal(outcome.kind === "finished" && outcome.finish.reason, "drain-wait-elapsed");
  const finished = await w.waitFor(message("finished"));
  assert.ok(Number(finished.waitedSeconds) >= 0.2);
  assert.equal(finished.targetGroup, "web-0");
  assert.equal(finished.target, "10.0.1.23:8080");
  assert.equal(
    w.lines.filter((l) => l.state === "draining").length,
    1,
    "the change to draining is one line, the drain start, and not repeated per poll",
  );
  assert.equal(w.statuses.at(-1)?.phase, "finished");
});

for (const [name, cases] of byTaskKind(TARGET_CASES)) {
  Deno.test(`watch: ${name}: draining starts the drain, for every NLB and ALB protocol`, async (t) => {
    for (const c of cases) {
      await t.step(c.protocol, async () => {
        await using w = await watch(targetCaseWorld(c), { pollIntervalMs: 20, deregistrationWaitMs: 0 });
        await w.waitFor(message("is healthy"));
        w.world.setState("draining");
        const outcome = await w.outcome;
        assert.equal(outcome.kind === "finished" && outcome.finish.reason, "drain-wait-elapsed");
        const started = await w.waitFor(message("drain started"));
        assert.equal(started.target, `${c.id}:${c.port}`);
        const calls = w.world.elbv2.state.healthCalls.get(w.world.targets[0].targetGroupArn) ?? [];
        assert.ok(calls.length >= 2, `${calls.length} DescribeTargetHealth calls`);
        for (const call of calls) assert.deepEqual(call.targets, [{ id: c.id, port: c.port }]);
      });
    }
  });
}

Deno.test("watch: a target deregistered without a visible drain ends the watch at once", async () => {
  await using w = await watch({ networkMode: "bridge" }, { deregistrationWaitMs: 60_000 });
  await w.waitFor(message("is healthy"));
  w.world.setState("unused");
  const outcome = await w.outcome;
  assert.deepEqual(outcome, { kind: "finished", finish: { reason: "deregistered", waitedMs: 0 } });
  const gone = await w.waitFor(message("is not registered"));
  assert.equal(gone.target, "i-0abc1234def567890:32768");
  const finished = await w.waitFor(message("finished"));
  assert.equal(finished.reason, "deregistered");
  assert.equal(finished.targetGroup, "web-0");
  assert.equal(finished.target, "i-0abc1234def567890:32768");
});

Deno.test("watch: ELB's own deregistration (draining, then gone after the delay) ends the drain early", async () => {
  await using w = await watch({
    networkMode: "awsvpc",
    targetGroups: [{ deregistrationDelayMs: 150 }],
    nlbPropagationMs: 100,
  }, {
    deregistrationWaitMs: 60_000,
  });
  await w.waitFor(message("is healthy"));
  w.world.deregister();
  const outcome = await w.outcome;
  assert.equal(outcome.kind === "finished" && outcome.finish.reason, "deregistered");
  assert.ok(outcome.kind === "finished" && outcome.finish.waitedMs < 1_000);
});

Deno.test("watch: exactly one DescribeTargetHealth per target group per interval", async () => {
  // Long enough intervals that a loaded 2-core CI machine's timer lag (tens of ms) stays inside the bounds.
  const interval = 300;
  const runMs = 4_500;
  await using w = await watch({
    networkMode: "awsvpc",
    targetGroups: [{ protocol: "TCP" }, { protocol: "HTTP", containerPort: 8081 }],
  }, { pollIntervalMs: interval });
  await new Promise((r) => setTimeout(r, runMs));
  w.controller.abort("SIGTERM");
  assert.deepEqual(await w.outcome, { kind: "stopped", phase: "watching" });
  for (const target of w.world.targets) {
    const calls = (w.world.elbv2.state.healthCalls.get(target.targetGroupArn) ?? []).map((call) => call.at);
    // Intervals jitter within +-10%: between runMs/110 and runMs/90 calls (plus the first, at start).
    assert.ok(
      calls.length >= Math.floor(runMs / (1.1 * interval)) - 1 &&
        calls.length <= Math.ceil(runMs / (0.9 * interval)) + 1,
      `${calls.length} calls in ${runMs} ms`,
    );
    const gaps = calls.slice(1).map((at, i) => at - calls[i]);
    // The emulator stamps arrivals, which carry the request latency's own jitter on top of the schedule.
    // A late call (timer lag under load) shortens the next gap by its lateness, never below the schedule minus that.
    assert.ok(Math.min(...gaps) >= 0.9 * interval - 100, `gaps ${gaps.join(", ")} ms`);
  }
});

/** Answered DescribeTargetHealth calls of the world's first target group so far (throttled ones are not recorded). */
const answeredCalls = (w: Watch) => w.world.elbv2.state.healthCalls.get(w.world.targets[0].targetGroupArn) ?? [];

/**
 * Sets the target draining and waits for the drain; returns how many answered calls there were from the
 * change to the "drain started" line: 1 when the first answer that shows `draining` starts the drain.
 */
async function answersUntilDrain(w: Watch): Promise<number> {
  // Calls recorded after this index were answered after the change, so they all read `draining`.
  const before = answeredCalls(w).length;
  w.world.setState("draining");
  const started = await w.waitFor(message("drain started"), 20_000);
  return answeredCalls(w).slice(before).filter((call) => call.at <= Date.parse(String(started.time))).length;
}

const paceLines = (w: Watch) => w.lines.filter((l) => String(l.message).startsWith("polling every"));

Deno.test("watch: 30% throttling: the sidecar slows down, and acts on draining with the first call that gets through", async () => {
  const interval = 100;
  let throttled = 0;
  let slowed = 0;
  for (const seed of [11, 12, 13]) {
    await using w = await watch(
      { networkMode: "awsvpc", faults: { elbv2: new Faults(seededRandom(seed)) } },
      { pollIntervalMs: interval, random: seededRandom(seed) },
    );
    await w.waitFor(message("is healthy"));
    w.world.elbv2.faults.throttleRate = 0.3;
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await answersUntilDrain(w), 1, `seed ${seed}: the first answer after the change started the drain`);
    throttled += w.lines.filter((l) => l.error === "Throttling").length;
    slowed += paceLines(w).filter((l) => l.level === "warning").length;
    const outcome = await w.outcome;
    assert.equal(outcome.kind, "finished");
  }
  assert.ok(throttled >= 3, `throttled calls were logged (${throttled})`);
  assert.ok(slowed >= 1, `a slow-down was logged (${slowed})`);
});

Deno.test("watch: sustained throttling slows the polls to the cap, one line per change; once it ends the first answer acts on draining", async () => {
  const interval = 100;
  await using w = await watch(
    { networkMode: "awsvpc" },
    { pollIntervalMs: interval, deregistrationWaitMs: 60_000 },
  );
  await w.waitFor(message("is healthy"));
  w.world.elbv2.faults.throttleRate = 1;
  // The status file carries the pace, so the health check's window stretches with it.
  for (const until = Date.now() + 20_000; w.statuses.at(-1)?.pollIntervalMs !== MAX_SLOWDOWN * interval;) {
    assert.ok(Date.now() < until, `not at the cap: ${JSON.stringify(w.statuses.at(-1))}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  // Doubling from 100 ms (less the little recovered between calls): 200, 400, 800 (the cap) ms, three
  // lines whatever the number of throttled calls.
  assert.deepEqual(paceLines(w).map((l) => Math.round(Number(l.intervalSeconds) * 1000 / interval)), [2, 4, 8]);
  const failedCalls = w.lines.filter((l) => l.error === "Throttling").length;
  assert.ok(failedCalls >= 3, `${failedCalls} throttled calls`);
  // AWS answers again: the drain is acted on with the first answer, at whatever pace.
  w.world.elbv2.faults.throttleRate = 0;
  assert.equal(await answersUntilDrain(w), 1);
  w.controller.abort("test over");
  await w.outcome;
  assert.equal(paceLines(w).length, 3, "no line per poll");
});

Deno.test("watch: a burst of 5xx is logged once as a warning, retried, and the recovery logged", async () => {
  await using w = await watch({ networkMode: "awsvpc" }, { pollIntervalMs: 60 });
  await w.waitFor(message("is healthy"));
  w.world.elbv2.faults.failNext(5, "server-error");
  const recovered = await w.waitFor(message("answers again"));
  assert.equal(recovered.failures, 5);
  const warnings = w.lines.filter((l) => l.level === "warning" && message("DescribeTargetHealth")(l));
  assert.equal(warnings.length, 1, "the first failure of the streak warns, the rest are debug");
  assert.equal(warnings[0].transient, true);
  assert.equal(w.lines.filter((l) => l.level === "debug" && message("DescribeTargetHealth")(l)).length, 4);
  w.controller.abort("SIGTERM");
  assert.deepEqual(await w.outcome, { kind: "stopped", phase: "watching" });
});

Deno.test("watch: a target group deleted mid-run is logged and retried; the others still drain the task", async () => {
  await using w = await watch({
    networkMode: "awsvpc",
    targetGroups: [{ protocol: "TCP" }, { protocol: "HTTPS", containerPort: 8443 }],
  });
  await w.waitFor(message("in web-1 is healthy"));
  w.world.elbv2.state.deleteTargetGroup(w.world.targets[0].targetGroupArn);
  const warning = await w.waitFor(message("DescribeTargetHealth for web-0 failed"));
  assert.equal(warning.error, "TargetGroupNotFoundException");
  assert.equal(warning.transient, false);
  await new Promise((r) => setTimeout(r, 300));
  const stale = w.statuses.at(-1)!;
  assert.equal(stale.phase, "watching", "a deleted group does not end the watch");
  assert.ok(Date.now() - stale.lastSuccessfulPollAt! >= 250, "the health check will see web-0 silent");
  w.world.setState("draining", 1);
  const outcome = await w.outcome;
  assert.equal(outcome.kind === "finished" && outcome.finish.reason, "drain-wait-elapsed");
});

Deno.test("watch: the abort signal stops it at once, even with a call hanging", async () => {
  await using w = await watch({ networkMode: "awsvpc" });
  await w.waitFor(message("is healthy"));
  w.world.elbv2.faults.failNext(100, "hang");
  await new Promise((r) => setTimeout(r, 150));
  const aborted = Date.now();
  w.controller.abort("SIGTERM");
  assert.deepEqual(await w.outcome, { kind: "stopped", phase: "watching" });
  assert.ok(Date.now() - aborted < 100);
});

Deno.test("watch: connections mode without a connection counter waits the full deregistration wait", async () => {
  await using w = await watch({ networkMode: "awsvpc" }, { drainMode: "connections", deregistrationWaitMs: 300 });
  await w.waitFor(message("is healthy"));
  w.world.setState("draining");
  const outcome = await w.outcome;
  assert.equal(outcome.kind === "finished" && outcome.finish.reason, "drain-wait-elapsed");
  await w.waitFor(message("cannot count connections"));
});

Deno.test("watch: connections mode ends once the counted connections stay at zero for the quiet period", async () => {
  let open = 2;
  await using w = await watch({ networkMode: "awsvpc" }, {
    drainMode: "connections",
    deregistrationWaitMs: 10_000,
    quietPeriodMs: 150,
    countConnections: (ports) => {
      assert.deepEqual([...ports], [8080]);
      return Promise.resolve(open);
    },
  });
  await w.waitFor(message("is healthy"));
  w.world.setState("draining");
  await w.waitFor(message("2 established connections"));
  await new Promise((r) => setTimeout(r, 300));
  open = 0;
  const closedAt = Date.now();
  const outcome = await w.outcome;
  assert.equal(outcome.kind === "finished" && outcome.finish.reason, "connections-quiet");
  const elapsed = Date.now() - closedAt;
  assert.ok(elapsed >= 150 && elapsed < 150 + 1_000, `exited ${elapsed} ms after the last connection closed`);
});

Deno.test("describeTargetHealth: an answer that trickles its body is cut off at the request timeout, as transient", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  const { targets, elbv2 } = await planFor(world); // clients with a 2 s request timeout
  const [target] = targets;
  world.elbv2.faults.trickleIntervalMs = 200; // the body is several hundred bytes: over a minute in all
  world.elbv2.faults.failNext(1, "trickle");
  const started = Date.now();
  const error = await describeTargetHealth(elbv2, target.targetGroupArn, [target]).then(
    () => assert.fail("a trickled answer must not complete within the test"),
    (error) => pollError(error),
  );
  const took = Date.now() - started;
  assert.equal(error.transient, true, JSON.stringify(error));
  assert.equal(error.code, "TimeoutError");
  assert.ok(took < 15_000, `the call was held ${took} ms`);
  assert.equal((await describeTargetHealth(elbv2, target.targetGroupArn, [target]))[0].state, "healthy");
});

const HOUR_MS = 3_600_000;

Deno.test("watch: the wall clock stepping an hour forward does not end a drain", async () => {
  using wall = steppableWallClock();
  await using w = await watch({ networkMode: "awsvpc" }, { deregistrationWaitMs: 1_500 });
  await w.waitFor(message("is healthy"));
  w.world.setState("draining");
  await w.waitFor(message("drain started"));
  const started = performance.now();
  wall.step(HOUR_MS);
  const outcome = await w.outcome;
  const waited = performance.now() - started;
  assert.equal(outcome.kind === "finished" && outcome.finish.reason, "drain-wait-elapsed");
  assert.ok(waited >= 1_200, `the drain ended ${waited} ms after it started, not after the 1.5 s wait`);
});

Deno.test("watch: the wall clock stepping an hour back does not stop polling", async () => {
  using wall = steppableWallClock();
  await using w = await watch({ networkMode: "awsvpc" }, { pollIntervalMs: 50 });
  await w.waitFor(message("is healthy"));
  const calls = () => w.world.elbv2.state.healthCalls.get(w.world.targets[0].targetGroupArn)?.length ?? 0;
  wall.step(-HOUR_MS);
  const before = calls();
  await new Promise((r) => setTimeout(r, 600));
  assert.ok(calls() >= before + 3, `${calls() - before} polls in 600 ms after the step, at a 50 ms interval`);
});
