/**
 * The health rule on its own: status files in, verdicts out. The watching cases feed it the status the
 * decision machine reports, so the rule is tested on what the daemon really writes.
 */
import assert from "node:assert/strict";
import { monotonicNow } from "../../lib/clock.ts";
import { DrainMachine, type Observation } from "../../lib/nlb_sidecar/machine.ts";
import {
  checkHealth,
  DEADLINE_SLACK_MS,
  fallbackStatusPath,
  healthVerdict,
  type SidecarState,
  type SidecarStatusDetails,
  statusPlaces,
  StatusReporter,
} from "../../lib/nlb_sidecar/status.ts";
import {
  containerKey,
  notOwnStatus,
  processStart,
  type StatusWriter,
  thisWriter,
} from "../../lib/nlb_sidecar/status_writer.ts";
import type { Status } from "../../lib/status_file.ts";
import { A, B, drainMachine, INTERVAL, TG_A, TG_B } from "./machine_fixtures.ts";
import { captureLog } from "./support.ts";

const REQUEST_TIMEOUT = 10_000;
/** Three polling intervals plus the request timeout. */
const WINDOW = 3 * INTERVAL + REQUEST_TIMEOUT;

function status(
  state: SidecarState,
  details: Omit<SidecarStatusDetails, "pollIntervalMs" | "requestTimeoutMs"> = {},
): Status {
  return {
    role: "nlb-sidecar",
    pid: 1,
    updatedAt: 0,
    state,
    details: { pollIntervalMs: INTERVAL, requestTimeoutMs: REQUEST_TIMEOUT, ...details },
  };
}

function machine(targets = [A]): DrainMachine {
  return drainMachine({ targets });
}

/** The verdict on what `m` would have written, asked at `now`. */
function verdictOf(m: DrainMachine, now: number) {
  const { phase, ...details } = m.status();
  return healthVerdict(status(phase, details), now);
}

const healthy = (at: number, target = A): Observation => ({
  kind: "target-health",
  at,
  targetGroupArn: target.targetGroupArn,
  readings: [{ id: target.id, port: target.port, state: "healthy" }],
});
const failed = (at: number, code: string, transient: boolean, target = A): Observation => ({
  kind: "poll-failed",
  at,
  targetGroupArn: target.targetGroupArn,
  error: { code, message: `${code} happened`, transient },
});

const TARGET_OF = new Map([[TG_A, A], [TG_B, B]]);

/**
 * Runs a new machine for `durationMs`, each call answered by `answer` 100 ms after it was made, and
 * returns the verdict at every moment the health check sees the oldest status: just before each step.
 */
function verdictsWhile(
  targets: Array<typeof A>,
  durationMs: number,
  answer: (at: number, target: typeof A) => Observation,
) {
  const m = machine(targets);
  const verdicts: Array<{ at: number; healthy: boolean; reason: string }> = [];
  let now = 0;
  let step = m.step(now);
  while (now < durationMs) {
    const called = step.actions.flatMap((a) => a.kind === "poll" ? [TARGET_OF.get(a.targetGroupArn)!] : []);
    const next = called.length > 0 ? now + 100 : step.wakeAt;
    verdicts.push({ at: next, ...verdictOf(m, next) });
    step = m.step(next, called.map((target) => answer(next, target)));
    now = next;
  }
  return verdicts;
}

Deno.test("health: no status file is unhealthy", () => {
  assert.equal(healthVerdict(undefined, 0).healthy, false);
});

Deno.test("health: healthy while discovering within DISCOVERY_TIMEOUT, unhealthy once discovery is long overdue", () => {
  const discovering = status("discovering", { discoveryDeadline: 300_000 });
  const early = healthVerdict(discovering, 1_000);
  assert.equal(early.healthy, true, early.reason);
  assert.match(early.reason, /discovering/);
  assert.equal(healthVerdict(discovering, 300_000 + REQUEST_TIMEOUT + DEADLINE_SLACK_MS).healthy, true);
  const hung = healthVerdict(discovering, 300_000 + REQUEST_TIMEOUT + DEADLINE_SLACK_MS + 1);
  assert.equal(hung.healthy, false);
  assert.match(hung.reason, /stuck/);
});

Deno.test("health: discovering past DISCOVERY_TIMEOUT stays healthy while transient retries go on, not once they stop", () => {
  const nextAttemptAt = 900_000;
  const retrying = status("discovering", {
    discoveryDeadline: 300_000,
    retrying: { step: "elasticloadbalancing:DescribeTargetGroups", error: "Throttling", nextAttemptAt },
  });
  const late = healthVerdict(retrying, nextAttemptAt - 1_000);
  assert.equal(late.healthy, true, late.reason);
  assert.match(late.reason, /DescribeTargetGroups.*Throttling.*transient/);
  assert.equal(healthVerdict(retrying, nextAttemptAt + REQUEST_TIMEOUT + DEADLINE_SLACK_MS).healthy, true);
  const stopped = healthVerdict(retrying, nextAttemptAt + REQUEST_TIMEOUT + DEADLINE_SLACK_MS + 1);
  assert.equal(stopped.healthy, false);
  assert.match(stopped.reason, /stuck/);
});

Deno.test("health: a permanently failed discovery is unhealthy and says why", () => {
  const verdict = healthVerdict(status("discovery-failed", { cause: "ecs:DescribeServices was refused" }), 0);
  assert.equal(verdict.healthy, false);
  assert.match(verdict.reason, /discovery failed: ecs:DescribeServices was refused/);
});

Deno.test("health: watching is healthy before the first poll completes, for one window", () => {
  const m = machine();
  m.step(0);
  assert.equal(verdictOf(m, WINDOW).healthy, true);
  const stuck = verdictOf(m, WINDOW + 1);
  assert.equal(stuck.healthy, false, "the first call never came back");
  assert.match(stuck.reason, /no poll has completed.*stuck/);
});

Deno.test("health: an hour of 100% throttling never makes the sidecar unhealthy", () => {
  const verdicts = verdictsWhile(
    [A],
    3_600_000,
    (at, target) => at < 1_000 ? healthy(at) : failed(at, "Throttling", true, target),
  );
  const unhealthy = verdicts.filter((v) => !v.healthy);
  assert.deepEqual(unhealthy, [], "AWS throttling is not the task's fault");
  const last = verdicts.at(-1)!;
  assert.match(last.reason, /last successful poll of every target group 3\d\d\d\.\d s ago/, "for the operator");
  assert.match(last.reason, /Throttling, transient/);
});

Deno.test("health: 5xx and timeouts count as transient too; the loop stalling does not", () => {
  const m = machine();
  m.step(0);
  m.step(100, [failed(100, "InternalFailure", true)]);
  m.step(20_000);
  m.step(20_100, [failed(20_100, "TimeoutError", true)]);
  assert.equal(verdictOf(m, 20_100 + WINDOW).healthy, true);
  const stalled = verdictOf(m, 20_100 + WINDOW + 1);
  assert.equal(stalled.healthy, false, "nothing completed for three intervals plus the request timeout");
  assert.match(stalled.reason, /no poll has completed/);
});

Deno.test("health: polls that succeed but stop coming make it unhealthy (a stalled loop)", () => {
  const m = machine();
  m.step(0);
  m.step(100, [healthy(100)]);
  assert.equal(verdictOf(m, 100 + WINDOW).healthy, true);
  assert.equal(verdictOf(m, 100 + WINDOW + 1).healthy, false);
});

Deno.test("health: every poll failing with a permanent error for three intervals is unhealthy", () => {
  // Answered at 100 ms, then denied: unhealthy from the first check more than a window after 100 ms.
  const verdicts = verdictsWhile(
    [A],
    10 * INTERVAL,
    (at, target) => at < 1_000 ? healthy(at) : failed(at, "AccessDenied", false, target),
  );
  const firstUnhealthy = verdicts.find((v) => !v.healthy);
  assert.ok(firstUnhealthy, "access denied for ten intervals must be reported");
  assert.ok(firstUnhealthy.at > 100 + WINDOW, `unhealthy at ${firstUnhealthy.at}: not before the window`);
  assert.ok(firstUnhealthy.at <= 100 + WINDOW + INTERVAL + 200, `unhealthy at ${firstUnhealthy.at}: too late`);
  assert.match(firstUnhealthy.reason, /permanent error \(AccessDenied\)/);
  assert.ok(verdicts.every((v) => v.at <= 100 + WINDOW || !v.healthy), "and stays unhealthy");
});

Deno.test("health: a permanent error shorter than three intervals, or in one group of two, stays healthy", () => {
  const brief = verdictsWhile(
    [A],
    10 * INTERVAL,
    (at, target) => at < 2 * INTERVAL ? failed(at, "AccessDenied", false, target) : healthy(at),
  );
  assert.ok(brief.every((v) => v.healthy), brief.find((v) => !v.healthy)?.reason);

  // The sidecar still sees the drain through group A: a deleted group B is a warning, not a reason to
  // replace the task.
  const split = verdictsWhile(
    [A, B],
    10 * INTERVAL,
    (at, target) => target === B ? failed(at, "TargetGroupNotFoundException", false, B) : healthy(at),
  );
  assert.ok(split.every((v) => v.healthy), split.find((v) => !v.healthy)?.reason);
});

Deno.test("health: healthy while a drain is within its deadline, unhealthy once a hung drain is past it", () => {
  const draining = status("draining", { drainStartedAt: 0, drainDeadline: 120_000 });
  assert.equal(healthVerdict(draining, 60_000).healthy, true);
  assert.equal(healthVerdict(draining, 120_000 + DEADLINE_SLACK_MS).healthy, true, "a little slack");
  const hung = healthVerdict(draining, 120_000 + DEADLINE_SLACK_MS + 1);
  assert.equal(hung.healthy, false);
  assert.match(hung.reason, /draining.*DEREGISTRATION_WAIT.*stuck/);
});

Deno.test("health: finished is healthy only for the moment before the exit", () => {
  const finished = status("finished", { writtenAt: 50_000 });
  assert.equal(healthVerdict(finished, 50_000 + DEADLINE_SLACK_MS).healthy, true);
  assert.equal(healthVerdict(finished, 50_000 + DEADLINE_SLACK_MS + 1).healthy, false);
});

Deno.test("health: a state it does not know is unhealthy", () => {
  const verdict = healthVerdict({ ...status("watching"), state: "confused" }, 0);
  assert.equal(verdict.healthy, false);
  assert.match(verdict.reason, /unknown state/);
});

Deno.test("health across processes: a wall-clock step of an hour either way changes no verdict", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-status-" });
  const path = `${dir}/status.json`;
  const realNow = Date.now;
  try {
    const { log } = captureLog();
    const writer = await thisWriter({ ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/clock-step" });
    const reporter = new StatusReporter(path, { pollIntervalMs: 1_000, requestTimeoutMs: 2_000 }, log, writer);
    const m = drainMachine({ pollIntervalMs: 1_000, startedAt: monotonicNow() });
    m.step(monotonicNow());
    m.step(monotonicNow(), [healthy(monotonicNow())]);
    const { phase, ...details } = m.status();
    await reporter.report(phase, details);
    for (const stepMs of [3_600_000, -3_600_000]) {
      Date.now = () => realNow() + stepMs;
      const verdict = await checkHealth(path, writer.container);
      assert.equal(verdict.healthy, true, `after a ${stepMs} ms step: ${verdict.reason}`);
      assert.match(verdict.reason, /last poll completed \d\.\d s ago/);
    }
  } finally {
    Date.now = realNow;
    await Deno.remove(dir, { recursive: true });
  }
});

/** Two containers of one task: one metadata URI each (ECS injects a container-specific one), one hostname. */
const URI_A = "http://169.254.170.2/v4/5f2b1a0c9e8d4f7a-1234567890";
const URI_B = "http://169.254.170.2/v4/5f2b1a0c9e8d4f7a-0987654321";
/** Above the kernel's largest pid_max (2^22): no process has it. */
const NO_SUCH_PID = 4_194_304;

Deno.test("status writer: the container key follows the metadata URI and the hostname, and names the fallback", async () => {
  const a = await containerKey({ ECS_CONTAINER_METADATA_URI_V4: URI_A }, "ip-10-0-1-23.ec2.internal");
  assert.match(a, /^[0-9a-f]{16}$/);
  assert.equal(await containerKey({ ECS_CONTAINER_METADATA_URI_V4: URI_A }, "ip-10-0-1-23.ec2.internal"), a);
  assert.notEqual(await containerKey({ ECS_CONTAINER_METADATA_URI_V4: URI_B }, "ip-10-0-1-23.ec2.internal"), a);
  // Outside ECS every container may be given the same URI; Docker's default hostname is the container id.
  const outside = (hostname: string) =>
    containerKey({ ECS_CONTAINER_METADATA_URI_V4: "http://127.0.0.1:51679/v4" }, hostname);
  assert.notEqual(await outside("3f4e1c2b9a8d"), await outside("7b6a5d4c3e2f"));
  assert.notEqual(
    await containerKey({}, "3f4e1c2b9a8d"),
    await containerKey({}, "7b6a5d4c3e2f"),
    "no URI: the hostname",
  );

  assert.equal(fallbackStatusPath("/tmp/ecs-nlb-sidecar.status.json", a), `/dev/shm/ecs-nlb-sidecar.status.${a}.json`);
  assert.equal(fallbackStatusPath("/var/run/status", a), `/dev/shm/status.${a}`);
  assert.deepEqual(statusPlaces("/tmp/status.json", a), ["/tmp/status.json", `/dev/shm/status.${a}.json`]);
  assert.deepEqual(statusPlaces("/dev/shm/status.json", a), ["/dev/shm/status.json"], "already in /dev/shm");
});

Deno.test("status writer: a process's start is read from /proc, even under a name with spaces and parentheses", async () => {
  const own = await processStart(Deno.pid);
  assert.equal(typeof own, "number");
  assert.equal(await processStart(Deno.pid), own);
  assert.equal(await processStart(NO_SUCH_PID), "exited");
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-comm-" });
  try {
    // The kernel names a process after the file it runs: this one's stat line reads `123 (a b) c) S ...`.
    await Deno.symlink("/bin/sleep", `${dir}/a b) c`);
    const child = new Deno.Command(`${dir}/a b) c`, { args: ["30"] }).spawn();
    try {
      const start = await processStart(child.pid);
      assert.equal(typeof start, "number");
      assert.ok((start as number) >= (own as number), `started after this process: ${start} < ${own}`);
    } finally {
      child.kill();
      await child.status;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("health trusts a status only from its own container's running daemon, and says why not", () => {
  const own = "0123456789abcdef";
  const written = (writer?: Partial<StatusWriter>, pid = 7): Status => ({
    ...status("watching"),
    pid,
    details: { ...status("watching").details, writer },
  });
  assert.equal(notOwnStatus(written({ container: own, startTicks: 500 }), own, 500), undefined);
  assert.match(
    notOwnStatus(written({ container: "fedcba9876543210", startTicks: 500 }), own, 500)!,
    /written by the sidecar of another container \(fedcba9876543210; this one is 0123456789abcdef\).*STATUS_FILE of its own/,
  );
  assert.match(notOwnStatus(written(undefined), own, 500)!, /does not say which container wrote it/);
  assert.match(
    notOwnStatus(written({ container: own, startTicks: 500 }), own, "exited")!,
    /process 7, which has exited/,
  );
  assert.match(
    notOwnStatus(written({ container: own, startTicks: 500 }, 1), own, 900)!,
    /earlier process 1 of this container/,
    "pid 1 again after a restart",
  );
  // Where the process cannot be checked (no /proc), the container alone decides: never fail a healthy task.
  assert.equal(notOwnStatus(written({ container: own, startTicks: 500 }), own, undefined), undefined);
  assert.equal(notOwnStatus(written({ container: own }), own, "exited"), undefined);
});

Deno.test("health across processes: STATUS_FILE written by another container or an exited process is set aside", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-status-" });
  const path = `${dir}/status.json`;
  try {
    const { log } = captureLog();
    const writer = await thisWriter({ ECS_CONTAINER_METADATA_URI_V4: URI_A });
    const reporter = new StatusReporter(path, { pollIntervalMs: 1_000, requestTimeoutMs: 2_000 }, log, writer);
    await reporter.report("discovering", { discoveryDeadline: monotonicNow() + 60_000 });
    const ownVerdict = await checkHealth(path, writer.container);
    assert.equal(ownVerdict.healthy, true, ownVerdict.reason);
    // The same file as another container's health sees it (one volume mounted into two tasks' sidecars).
    const other = await containerKey({ ECS_CONTAINER_METADATA_URI_V4: URI_B });
    const foreign = await checkHealth(path, other);
    assert.equal(foreign.healthy, false);
    assert.match(
      foreign.reason,
      /status\.json is not this sidecar's status: it was written by the sidecar of another container/,
    );
    // A status of a daemon that has exited since, in this container.
    const left = JSON.parse(await Deno.readTextFile(path));
    await Deno.writeTextFile(path, JSON.stringify({ ...left, pid: NO_SUCH_PID }));
    const stale = await checkHealth(path, writer.container);
    assert.equal(stale.healthy, false);
    assert.match(stale.reason, /written by process 4194304, which has exited: a stale file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("health across processes: the /dev/shm fallback is the container's own, and a longer leftover there is overwritten", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-status-" });
  // A file where STATUS_FILE's folder should be: no process can write STATUS_FILE, not even root.
  await Deno.writeTextFile(`${dir}/not-a-folder`, "");
  const path = `${dir}/not-a-folder/status.json`;
  const uri = `http://169.254.170.2/v4/status-test-${crypto.randomUUID()}`;
  const writer = await thisWriter({ ECS_CONTAINER_METADATA_URI_V4: uri });
  const fallback = fallbackStatusPath(path, writer.container);
  try {
    await Deno.writeTextFile(fallback, JSON.stringify(status("discovery-failed", { cause: "x".repeat(4_000) })));
    const { log, lines } = captureLog();
    using reporter = new StatusReporter(path, { pollIntervalMs: 1_000, requestTimeoutMs: 2_000 }, log, writer);
    await reporter.report("discovering", { discoveryDeadline: monotonicNow() + 60_000 });
    assert.equal(lines.find((line) => String(line.message).includes("not writable"))?.fallback, fallback);
    const verdict = await checkHealth(path, writer.container);
    assert.equal(verdict.healthy, true, verdict.reason);
    assert.match(verdict.reason, /discovering/);
    const other = await containerKey({ ECS_CONTAINER_METADATA_URI_V4: `${uri}-other` });
    const elsewhere = await checkHealth(path, other);
    assert.equal(elsewhere.healthy, false, `another container's health does not see it: ${elsewhere.reason}`);
  } finally {
    await Deno.remove(fallback).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
