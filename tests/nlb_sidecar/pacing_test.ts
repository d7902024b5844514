/**
 * The pace on its own: observations and their times in, the interval in force and the changes worth a
 * log line out; then with the decision machine and the health rule it feeds. No AWS, no timers.
 */
import assert from "node:assert/strict";
import type { Observation } from "../../lib/nlb_sidecar/machine.ts";
import { MAX_SLOWDOWN, PollPacing, RECOVERY_PER_INTERVAL } from "../../lib/nlb_sidecar/pacing.ts";
import { checkHealth, StatusReporter } from "../../lib/nlb_sidecar/status.ts";
import { thisWriter } from "../../lib/nlb_sidecar/status_writer.ts";
import { A, drainMachine, INTERVAL } from "./machine_fixtures.ts";
import { captureLog } from "./support.ts";

const answered = (at: number): Observation => ({
  kind: "target-health",
  at,
  targetGroupArn: A.targetGroupArn,
  readings: [{ id: A.id, port: A.port, state: "healthy" }],
});
const failed = (at: number, code = "Throttling", transient = true): Observation => ({
  kind: "poll-failed",
  at,
  targetGroupArn: A.targetGroupArn,
  error: { code, message: `${code} happened`, transient },
});

/** Throttled once per interval in force, `rounds` times from `from`; the time of the last failure. */
function throttledRounds(pacing: PollPacing, from: number, rounds: number): number {
  let at = from;
  for (let i = 0; i < rounds; i++) {
    at += pacing.intervalMs;
    pacing.observe([failed(at)]);
  }
  return at;
}

Deno.test("pacing: answers keep the configured interval, and say nothing", () => {
  const pacing = new PollPacing(INTERVAL);
  for (let i = 0; i < 10; i++) assert.equal(pacing.observe([answered(i * INTERVAL)]), undefined);
  assert.equal(pacing.intervalMs, INTERVAL);
});

Deno.test("pacing: a throttled streak doubles the interval once per round, up to the cap", () => {
  const pacing = new PollPacing(INTERVAL);
  pacing.observe([answered(0)]);
  assert.deepEqual(pacing.observe([failed(INTERVAL)]), {
    kind: "slowed",
    intervalMs: 2 * INTERVAL,
    previousIntervalMs: INTERVAL,
    error: "Throttling",
  });
  // The machine's quick retry (10-30% of the new interval later) and a second group of the same round
  // are the same throttling seen again: no second slow-down for them.
  assert.equal(pacing.observe([failed(INTERVAL + 0.6 * INTERVAL), failed(INTERVAL + 0.6 * INTERVAL)]), undefined);
  assert.equal(pacing.intervalMs, 2 * INTERVAL);
  // The next regular poll, one (old) interval after the slow-down, is throttled again: slower still.
  const next = pacing.observe([failed(2 * INTERVAL)]);
  assert.equal(next?.kind, "slowed");
  assert.ok(pacing.intervalMs > 3.9 * INTERVAL && pacing.intervalMs <= 4 * INTERVAL, `${pacing.intervalMs}`);
  throttledRounds(pacing, 2 * INTERVAL, 10);
  assert.equal(pacing.intervalMs, MAX_SLOWDOWN * INTERVAL, "never slower than the cap");
});

Deno.test("pacing: at the cap, more throttling says nothing more", () => {
  const pacing = new PollPacing(INTERVAL);
  const at = throttledRounds(pacing, 0, 5);
  assert.equal(pacing.intervalMs, MAX_SLOWDOWN * INTERVAL);
  let lines = 0;
  for (let i = 1; i <= 20; i++) if (pacing.observe([failed(at + i * pacing.intervalMs)])) lines++;
  assert.equal(lines, 0);
});

Deno.test("pacing: permanent errors do not slow the pace, and it keeps recovering through them", () => {
  const pacing = new PollPacing(INTERVAL);
  for (let i = 1; i <= 10; i++) {
    assert.equal(pacing.observe([failed(i * INTERVAL, "AccessDenied", false)]), undefined);
  }
  assert.equal(pacing.intervalMs, INTERVAL);
  const slowedAt = 11 * INTERVAL;
  pacing.observe([failed(slowedAt)]);
  assert.equal(pacing.intervalMs, 2 * INTERVAL);
  const back = pacing.observe([failed(slowedAt + 1 / RECOVERY_PER_INTERVAL * INTERVAL, "AccessDenied", false)]);
  assert.equal(back?.kind, "restored");
  assert.equal(pacing.intervalMs, INTERVAL);
});

Deno.test("pacing: successes bring the pace back gradually, one line per halving and one at the end", () => {
  const pacing = new PollPacing(INTERVAL);
  const slowedAt = throttledRounds(pacing, 0, 5);
  assert.equal(pacing.intervalMs, MAX_SLOWDOWN * INTERVAL);
  let at = slowedAt;
  const changes = [];
  const intervals: number[] = [];
  while (pacing.intervalMs > INTERVAL) {
    at += pacing.intervalMs;
    const change = pacing.observe([answered(at)]);
    if (change) changes.push(change);
    intervals.push(pacing.intervalMs);
    assert.ok(at < 24 * 3600_000, "the pace came back");
  }
  assert.deepEqual(changes.map((c) => [c.kind, Math.ceil(c.previousIntervalMs / INTERVAL)]), [
    ["recovering", 8],
    ["recovering", 4],
    ["restored", 2],
  ]);
  assert.ok(changes[0].intervalMs <= 4 * INTERVAL && changes[1].intervalMs <= 2 * INTERVAL);
  assert.equal(changes[2].intervalMs, INTERVAL);
  assert.ok(intervals.length > 10, `gradually: ${intervals.length} answers`);
  for (let i = 1; i < intervals.length; i++) assert.ok(intervals[i] <= intervals[i - 1], "never slower on success");
  // The recovery is paced by time: (8 - 1) / RECOVERY_PER_INTERVAL configured intervals, to within one answer.
  const expected = (MAX_SLOWDOWN - 1) / RECOVERY_PER_INTERVAL * INTERVAL;
  assert.ok(Math.abs(at - slowedAt - expected) <= MAX_SLOWDOWN * INTERVAL, `back after ${(at - slowedAt) / INTERVAL}`);
});

Deno.test("pacing: a throttle while recovering slows again from where the pace is", () => {
  const pacing = new PollPacing(INTERVAL);
  pacing.observe([failed(0)]);
  assert.equal(pacing.intervalMs, 2 * INTERVAL);
  // Half the way back (24 of the 48 intervals from 2x), then one throttle: 1.5 x 2 = 3x.
  const halfway = 24 * INTERVAL;
  pacing.observe([answered(halfway)]);
  assert.ok(Math.abs(pacing.intervalMs - 1.5 * INTERVAL) < 1);
  const change = pacing.observe([failed(halfway + pacing.intervalMs)]);
  assert.equal(change?.kind, "slowed");
  assert.equal(change?.previousIntervalMs, 2 * INTERVAL, "the interval of the last line, not of the last poll");
  assert.ok(Math.abs(pacing.intervalMs - 3 * INTERVAL) < INTERVAL / 10, `${pacing.intervalMs / INTERVAL}`);
});

Deno.test("pacing: observations that are not polls leave the pace alone", () => {
  const pacing = new PollPacing(INTERVAL);
  pacing.observe([failed(0)]);
  assert.equal(
    pacing.observe([
      { kind: "connections", at: 10 * INTERVAL, established: 3 },
      { kind: "connections-unavailable", at: 10 * INTERVAL, message: "no table" },
    ]),
    undefined,
  );
  assert.equal(pacing.intervalMs, 2 * INTERVAL);
});

Deno.test("pacing with the machine: polls and the quick retry follow the interval set, and the status reports it", () => {
  const m = drainMachine();
  m.step(0);
  m.setPollInterval(4 * INTERVAL);
  assert.equal(m.status().pollIntervalMs, 4 * INTERVAL);
  // The poll already scheduled keeps its time; the ones after it come at the pace.
  assert.equal(m.step(100, [answered(100)]).wakeAt, INTERVAL);
  assert.equal(m.step(INTERVAL).actions.length, 1);
  const answer = m.step(INTERVAL + 100, [answered(INTERVAL + 100)]);
  assert.equal(answer.wakeAt, INTERVAL + 4 * INTERVAL, "random 0.5: no jitter");
  m.step(answer.wakeAt);
  // The quick retry after the first failure of a streak is a fraction (10-30%, 20% at random 0.5) of the pace.
  const retry = m.step(answer.wakeAt + 100, [failed(answer.wakeAt + 100)]);
  assert.equal(retry.wakeAt, answer.wakeAt + 100 + 0.2 * 4 * INTERVAL);
});

Deno.test("pacing with the health check: a sidecar slowed to the cap stays healthy between its polls", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-pacing-" });
  try {
    const requestTimeoutMs = 10_000;
    const reporter = new StatusReporter(
      `${dir}/status.json`,
      { pollIntervalMs: INTERVAL, requestTimeoutMs },
      captureLog().log,
      await thisWriter({ ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/pacing" }),
    );
    const m = drainMachine();
    m.step(0);
    m.setPollInterval(MAX_SLOWDOWN * INTERVAL);
    m.step(100, [failed(100)]);
    // What the watch loop reports, as program.ts hands it on.
    const { phase, ...details } = m.status();
    await reporter.report(phase, details);
    // No poll completes for almost one slowed interval: far more than three configured intervals.
    const beforeNextPoll = 100 + MAX_SLOWDOWN * INTERVAL - 1;
    assert.ok(beforeNextPoll - 100 > 3 * INTERVAL + requestTimeoutMs);
    const meanwhile = await checkHealth(reporter.path, reporter.writer.container, beforeNextPoll);
    assert.equal(meanwhile.healthy, true, meanwhile.reason);
    // A loop that stalls is still found out, three slowed intervals on.
    const stalled = await checkHealth(
      reporter.path,
      reporter.writer.container,
      100 + 3 * MAX_SLOWDOWN * INTERVAL + requestTimeoutMs + 1,
    );
    assert.equal(stalled.healthy, false, stalled.reason);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
