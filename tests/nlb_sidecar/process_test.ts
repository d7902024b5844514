/**
 * The nlb-sidecar as its own process, with exactly the permissions and V8 flags of its binary
 * (lib/roles.ts), against the emulated world: every outcome and its exit code.
 */
import assert from "node:assert/strict";
import { basename } from "node:path";
import type { TaskMetadata } from "../../lib/ecs_metadata.ts";
import { fallbackStatusPath } from "../../lib/nlb_sidecar/status.ts";
import { containerKey } from "../../lib/nlb_sidecar/status_writer.ts";
import { type LogEntry, runRoleToEnd, spawnRole } from "../../sim/role_process.ts";
import { type EcsWorld, startEcsWorld, type WorldOptions } from "../../sim/ecs_world.ts";
import { LoadBalancerTraffic } from "../../sim/downstream.ts";
import { listenLoopback } from "./support.ts";

/** Below the 1 s minimum: allowed only because the ELB endpoint is the loopback emulator, not AWS. */
const FAST = { POLLING_FREQUENCY: "0.2", LOG_LEVEL: "debug" };
/** An interface VPC endpoint is still AWS, with the account's ELB API budget. */
const VPC_ENDPOINT = "https://vpce-0a1b2c3d4e5f67890-abcdefgh.elasticloadbalancing.eu-west-1.vpce.amazonaws.com";

/** What ECS gives the sidecar's container: its environment, which its `health` check runs with too. */
interface Container {
  readonly statusFile: string;
  readonly env: Readonly<Record<string, string>>;
}

interface Sidecar extends Container, AsyncDisposable {
  readonly world: EcsWorld;
  readonly process: ReturnType<typeof spawnRole>;
}

async function sidecar(
  worldOptions: WorldOptions,
  env: Record<string, string> = {},
  arrange: (world: EcsWorld) => unknown = () => {},
  wrapper?: (statusDir: string) => string[],
): Promise<Sidecar> {
  const world = await startEcsWorld(worldOptions);
  await arrange(world);
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-test-" });
  const statusFile = `${dir}/status.json`;
  const containerEnv = { ...world.env, ...FAST, STATUS_FILE: statusFile, ...env };
  const process = spawnRole("nlb-sidecar", { env: containerEnv, wrapper: wrapper?.(dir) });
  return {
    world,
    process,
    statusFile,
    env: containerEnv,
    async [Symbol.asyncDispose]() {
      await process[Symbol.asyncDispose]();
      await world.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Sends `signal` and checks the promise every role makes: exit 0 within a second. Returns the last log line. */
async function stopWith(s: Sidecar, signal: "SIGTERM" | "SIGINT"): Promise<LogEntry | undefined> {
  const sent = Date.now();
  s.process.kill(signal);
  const exit = await s.process.exited;
  assert.equal(exit.code, 0);
  assert.ok(exit.at - sent < 1_000, `exit ${exit.at - sent} ms after ${signal}`);
  return s.process.logs.at(-1);
}

const startsWith = (text: string) => (entry: LogEntry) => entry.message.startsWith(text);
const includes = (text: string) => (entry: LogEntry) => entry.message.includes(text);

/**
 * Runs `health` as ECS does: another process in the sidecar's container, with the container's environment
 * (`inMountsOf`: in its mount namespace).
 */
function health(container: Container, inMountsOf?: number) {
  return runRoleToEnd("nlb-sidecar", {
    args: ["health"],
    env: container.env,
    wrapper: inMountsOf === undefined ? undefined : ["nsenter", "-t", String(inMountsOf), "-m", "-w", "--"],
  });
}

/** Whether this machine lets the tests give a process its own mounts (root, or CAP_SYS_ADMIN). */
const canUnshareMounts = (() => {
  try {
    return new Deno.Command("unshare", { args: ["--mount", "true"], stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

/**
 * A container with `readonlyRootFilesystem: true` and no volume, as Docker and containerd make it: its
 * own mounts, the status file's folder read-only, and /dev/shm the runtime's writable tmpfs (or
 * read-only too: Podman's --read-only-tmpfs=false), or a folder that other containers see as their
 * /dev/shm too (`ipcMode: host` or `task`: the host's or the task's IPC resources, /dev/shm included).
 */
const readOnlyRoot = (devShm: "rw" | "ro" | { readonly sharedFolder: string }) => (statusDir: string) => [
  "unshare",
  "--mount",
  "--propagation",
  "private",
  "sh",
  "-c",
  `mount -t tmpfs -o ro tmpfs "$0" && ${
    typeof devShm === "string" ? `mount -t tmpfs -o ${devShm} tmpfs` : `mount --bind '${devShm.sharedFolder}'`
  } /dev/shm && exec "$@"`,
  statusDir,
];

Deno.test("process: draining -> exit 0 once DEREGISTRATION_WAIT has passed", async () => {
  await using s = await sidecar({ networkMode: "awsvpc" }, { DEREGISTRATION_WAIT: "0.8" });
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  const started = await s.process.waitForLog(startsWith("drain started"));
  assert.equal(started.targetGroup, "web-0");
  assert.equal(started.target, "10.0.1.23:8080");
  assert.equal(started.state, "draining");
  assert.equal(started.previousState, "healthy");
  assert.equal(started.reason, "Target.DeregistrationInProgress");
  assert.equal(started.waitSeconds, 0.8);
  const exit = await s.process.exited;
  assert.equal(exit.code, 0);
  const waited = exit.at - Date.parse(started.time);
  assert.ok(waited >= 800, `exited ${waited} ms after the drain started`);
  const finished = s.process.logs.find(startsWith("finished"))!;
  assert.equal(finished.reason, "drain-wait-elapsed");
  assert.equal(finished.targetGroup, "web-0");
  assert.equal(finished.target, "10.0.1.23:8080");
  assert.ok(Number(finished.waitedSeconds) >= 0.8);
});

Deno.test("process: a target deregistered outright -> exit 0 at once, without the wait", async () => {
  await using s = await sidecar({ networkMode: "bridge" }, { DEREGISTRATION_WAIT: "120" });
  await s.process.waitForLog(includes("is healthy"));
  const deregisteredAt = Date.now();
  s.world.setState("unused");
  const exit = await s.process.exited;
  assert.equal(exit.code, 0);
  assert.ok(exit.at - deregisteredAt < 2_000, `exited ${exit.at - deregisteredAt} ms after deregistration`);
  assert.equal(s.process.logs.find(startsWith("finished"))?.reason, "deregistered");
});

Deno.test("process: a new task on an IP still draining from an old task keeps running, and drains later on its own", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc", targetGroups: [{ deregistrationDelayMs: 1_500 }], nlbPropagationMs: 1_500 },
    { DEREGISTRATION_WAIT: "0.5" },
    (world) => world.deregister(), // the old task with this IP was deregistered: draining for 1.5 s, then unused
  );
  const reused = await s.process.waitForLog(includes("is draining before this task was seen registered"));
  assert.equal(reused.target, "10.0.1.23:8080");
  await s.process.waitForLog(includes("is not registered"));
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(s.process.logs.find(startsWith("finished")), undefined, "the old task's drain is not this task's");
  s.world.setState("healthy"); // ECS registers the new task
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  await s.process.waitForLog(startsWith("drain started"));
  const exit = await s.process.exited;
  assert.equal(exit.code, 0);
  assert.equal(s.process.logs.find(startsWith("finished"))?.reason, "drain-wait-elapsed");
});

Deno.test("process: a drain whose target turns healthy again is cancelled and logged, the sidecar keeps watching", async () => {
  await using s = await sidecar({ networkMode: "awsvpc" }, { DEREGISTRATION_WAIT: "2" });
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  await s.process.waitForLog(startsWith("drain started"));
  s.world.setState("healthy");
  const cancelled = await s.process.waitForLog(startsWith("drain cancelled"));
  assert.equal(cancelled.state, "healthy");
  await new Promise((r) => setTimeout(r, 2_500));
  assert.equal(s.process.logs.find(startsWith("finished")), undefined, "the cancelled drain's wait does not end it");
  assert.equal((await stopWith(s, "SIGTERM"))?.state, "watching");
});

Deno.test("process: SIGTERM while watching -> exit 0 within a second", async () => {
  await using s = await sidecar({ networkMode: "awsvpc" });
  await s.process.waitForLog(includes("is healthy"));
  assert.equal((await stopWith(s, "SIGTERM"))?.signal, "SIGTERM");
});

Deno.test("process: SIGINT during discovery, metadata endpoint hanging -> exit 0 within a second", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc" },
    {},
    (world) => world.metadata.faults.failNext(1_000, "hang"),
  );
  await s.process.waitForLog(startsWith("starting"));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await stopWith(s, "SIGINT"))?.state, "discovering");
});

Deno.test("process: metadata endpoint down at start -> keeps retrying, healthy within DISCOVERY_TIMEOUT, exit 0 on SIGTERM", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = closed.addr;
  closed.close();
  await using s = await sidecar({ networkMode: "awsvpc" }, {
    ECS_CONTAINER_METADATA_URI_V4: `http://127.0.0.1:${port}/v4/0123456789abcdef-1234567890`,
    DISCOVERY_TIMEOUT: "60",
  });
  const retry = (entry: LogEntry) => startsWith("task metadata failed")(entry) && Number(entry.attempt) >= 3;
  await s.process.waitForLog(retry);
  const verdict = await health(s);
  assert.equal(verdict.code, 0, verdict.stdout);
  assert.match(verdict.stdout, /discovering/);
  assert.ok(!s.process.logs.some(startsWith("discovery failed")), "a metadata endpoint not up yet is transient");
  assert.equal((await stopWith(s, "SIGTERM"))?.state, "discovering");
});

Deno.test("process: SIGTERM during a drain -> exit 0 within a second", async () => {
  await using s = await sidecar({ networkMode: "host" }, { DEREGISTRATION_WAIT: "60" });
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  await s.process.waitForLog(startsWith("drain started"));
  assert.equal((await stopWith(s, "SIGTERM"))?.state, "draining");
});

Deno.test("process: bad settings -> exit 2 and a message naming the setting, before anything else", async () => {
  const base = { ECS_CONTAINER_METADATA_URI_V4: "http://127.0.0.1:9/v4/x" };
  const cases: Array<[Record<string, string>, string[], RegExp]> = [
    [{ ...base, DEREGISTRATION_WAIT: "abc" }, [], /DEREGISTRATION_WAIT="abc"/],
    [{ ...base, POLLING_FREQUENCY: "0" }, [], /POLLING_FREQUENCY="0": expected more than 0 seconds/],
    [{ ...base, POLLING_FREQUENCY: "0.01" }, [], /POLLING_FREQUENCY="0.01": .*at least 1 s.*ELB API/],
    [
      { ...base, POLLING_FREQUENCY: "0.5", AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: VPC_ENDPOINT },
      [],
      /POLLING_FREQUENCY="0.5": .*at least 1 s/,
    ],
    [{ ...base, DRAIN_MODE: "gentle" }, [], /DRAIN_MODE="gentle".*fixed, connections/],
    [{ ...base, ON_DISCOVERY_FAILURE: "crash" }, [], /ON_DISCOVERY_FAILURE/],
    [{ ...base, AWS_REGION: "mars" }, [], /AWS_REGION="mars"/],
    [{ ...base, DRAIN_QUIET_PERIOD: "-1" }, [], /DRAIN_QUIET_PERIOD/],
    [{ ...base, STATUS_FILE: "status.json" }, [], /STATUS_FILE.*absolute/],
    [{}, [], /ECS_CONTAINER_METADATA_URI_V4 .*is required/],
    [base, ["--polling-frequency", "soon"], /--polling-frequency="soon"/],
    [base, ["status"], /status: unknown subcommand/],
  ];
  const results = await Promise.all(cases.map(([env, args]) => runRoleToEnd("nlb-sidecar", { env, args })));
  for (const [i, result] of results.entries()) {
    assert.equal(result.code, 2, `case ${i}: ${result.stderr}`);
    assert.match(result.stderr, cases[i][2]);
    assert.equal(result.stdout, "", "nothing started");
  }
});

const ownContainerLine = (entry: LogEntry) => entry.step === "own-container";

Deno.test("process: a restart policy that restarts exit 0 -> one error line at start with the fix; a drain still exits 0", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc", sidecarDefinition: { restartPolicy: { enabled: true, restartAttemptPeriod: 60 } } },
    { DEREGISTRATION_WAIT: "0.3" },
  );
  const line = await s.process.waitForLog(ownContainerLine);
  assert.equal(line.level, "error");
  assert.equal(line.check, "restart-policy");
  assert.match(
    line.message,
    /^container sidecar has an ECS restart policy that restarts exit 0 \(ignoredExitCodes: \[\]\)/,
  );
  assert.match(line.message, /Fix: add 0 to restartPolicy\.ignoredExitCodes of container sidecar/);
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  assert.equal((await s.process.exited).code, 0, "the sidecar still says the drain is over: ECS decides");
  assert.equal(s.process.logs.filter((e) => e.level === "error").length, 1, "said once");
});

Deno.test("process: restarted after its drain by a restart policy, the sidecar waits for ECS instead of stopping a task", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc", sidecarDefinition: { restartPolicy: { enabled: true } } },
    { DEREGISTRATION_WAIT: "0.3" },
  );
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  assert.equal((await s.process.exited).code, 0);
  // What the agent does with that exit 0: the same container runs again, with one more RestartCount.
  s.world.metadata.recordRestart("sidecar");
  await using restarted = spawnRole("nlb-sidecar", { env: { ...s.world.env, ...FAST, STATUS_FILE: s.statusFile } });
  const line = await restarted.waitForLog(ownContainerLine);
  assert.match(line.message, /restarts exit 0/);
  await restarted.waitForLog(includes("is draining before this task was seen registered"));
  const early = await Promise.race([restarted.exited, new Promise((resolve) => setTimeout(resolve, 2_000, "running"))]);
  assert.equal(early, "running", "a first `draining` may be another task's drain on this IP: not taken as its own");
  restarted.kill("SIGTERM");
  assert.equal((await restarted.exited).code, 0, "ECS's stop at the end of the deregistration: exit 0");
});

Deno.test("process: a task definition read throttled for good holds up neither the drain nor the exit", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc" },
    { POLLING_FREQUENCY: "5", DEREGISTRATION_WAIT: "0.3" },
    (world) => world.ecs.state.throttled.add("DescribeTaskDefinition"),
  );
  // 5 s calls: the check may retry for 15 s, far past this drain.
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  const drained = await s.process.waitForLog(startsWith("drain started"));
  const exit = await s.process.exited;
  assert.equal(exit.code, 0);
  assert.ok(
    exit.at - Date.parse(drained.time) < 3_000,
    `exit ${exit.at - Date.parse(drained.time)} ms after the drain began`,
  );
  assert.ok(s.process.logs.some(includes("DescribeTaskDefinition failed (ThrottlingException), retrying")));
});

Deno.test("process: a restart policy that ignores exit 0, or none at all -> no warning; not essential -> a warning", async () => {
  {
    await using s = await sidecar(
      { networkMode: "awsvpc", sidecarDefinition: { restartPolicy: { enabled: true, ignoredExitCodes: [0] } } },
    );
    const line = await s.process.waitForLog(ownContainerLine);
    assert.equal(line.level, "info");
    assert.match(line.message, /ignores exit 0: a drain still stops the task early/);
  }
  {
    await using s = await sidecar({ networkMode: "awsvpc" });
    await s.process.waitForLog(includes("is healthy"));
    await s.process.waitForLog(startsWith("own container checked"));
    assert.deepEqual(s.process.logs.filter((e) => e.level !== "info" && e.level !== "debug"), [], "no noise");
  }
  {
    await using s = await sidecar({ networkMode: "bridge", sidecarDefinition: { essential: false } });
    const line = await s.process.waitForLog(ownContainerLine);
    assert.equal(line.level, "warning");
    assert.equal(line.check, "essential");
    assert.match(line.message, /^container sidecar is not essential: its exit after a drain stops nothing/);
  }
});

Deno.test("process: DescribeTaskDefinition denied -> one warning naming it and what is lost; RestartCount still warns", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc", sidecarDefinition: { restartPolicy: { enabled: true } } },
    {},
    (world) => {
      world.ecs.state.denied.add("DescribeTaskDefinition");
      world.metadata.recordRestart("sidecar");
    },
  );
  const denied = await s.process.waitForLog(includes("ecs:DescribeTaskDefinition is not allowed"));
  assert.equal(denied.level, "warning");
  assert.match(
    denied.message,
    /cannot check that its container is essential and that its restart policy, if any, ignores exit 0/,
  );
  const policy = await s.process.waitForLog((e) => ownContainerLine(e) && e.check === "restart-policy");
  assert.equal(policy.level, "warning", "ignoredExitCodes unknown: it may be fine");
  assert.match(policy.message, /task metadata reports RestartCount 1/);
  await s.process.waitForLog(includes("is healthy"));
  assert.equal(s.process.logs.filter(includes("DescribeTaskDefinition is not allowed")).length, 1);
  assert.equal(s.world.ecs.calls.count("DescribeTaskDefinition"), 1, "a denial is not retried");
  assert.equal((await stopWith(s, "SIGTERM"))?.state, "watching");
});

Deno.test("process: several bad settings -> every one reported at once, one line each, exit 2", async () => {
  const result = await runRoleToEnd("nlb-sidecar", {
    env: { DEREGISTRATION_WAIT: "abc", DRAIN_MODE: "gentle", AWS_REGION: "mars", STATUS_FILE: "status.json" },
    args: ["--polling-frequency", "soon"],
  });
  assert.equal(result.code, 2);
  assert.equal(result.stdout, "", "nothing started");
  const lines = result.stderr.trimEnd().split("\n");
  const expected = [
    /^ecs-nlb-sidecar: configuration error: DEREGISTRATION_WAIT="abc": /,
    /^ecs-nlb-sidecar: configuration error: --polling-frequency="soon": /,
    /^ecs-nlb-sidecar: configuration error: DRAIN_MODE="gentle": /,
    /^ecs-nlb-sidecar: configuration error: ECS_CONTAINER_METADATA_URI_V4 \(or --metadata-uri\): is required$/,
    /^ecs-nlb-sidecar: configuration error: AWS_REGION="mars": /,
    /^ecs-nlb-sidecar: configuration error: STATUS_FILE="status.json": /,
  ];
  assert.equal(lines.length, expected.length, result.stderr);
  for (const [i, pattern] of expected.entries()) assert.match(lines[i], pattern);
});

Deno.test("process: connections mode holds the drain while real TCP connections are open, exits once they close", async () => {
  const app = listenLoopback();
  try {
    const quiet = 0.5;
    await using s = await sidecar(
      { networkMode: "awsvpc", targetGroups: [{ containerPort: app.port }] },
      // No floor: this test is about the quiet period (the floor has its own tests).
      { DRAIN_MODE: "connections", DRAIN_QUIET_PERIOD: String(quiet), DRAIN_MIN_WAIT: "0", DEREGISTRATION_WAIT: "30" },
    );
    const clients = await app.connect(2);
    await s.process.waitForLog(includes("is healthy"));
    s.world.setState("draining");
    const counted = await s.process.waitForLog(includes("established connections"));
    assert.equal(counted.established, 2);
    assert.deepEqual(counted.ports, [app.port]);
    await new Promise((r) => setTimeout(r, 1_500));
    assert.ok(!s.process.logs.some(startsWith("finished")), "still draining: the connections are open");
    const closedAt = Date.now();
    for (const conn of [...clients, ...app.accepted]) conn.close();
    const exit = await s.process.exited;
    assert.equal(exit.code, 0);
    const after = exit.at - closedAt;
    assert.ok(after < (quiet + 1) * 1000, `exited ${after} ms after the last connection closed`);
    assert.equal(s.process.logs.find(startsWith("finished"))?.reason, "connections-quiet");
  } finally {
    await app.close();
  }
});

Deno.test("process: connections mode behind an NLB outlasts its propagation: no new flow reaches a stopped application", async () => {
  const app = listenLoopback();
  const propagationMs = 3_000;
  let appRunning = true;
  try {
    await using s = await sidecar(
      {
        networkMode: "awsvpc",
        targetGroups: [{ containerPort: app.port, deregistrationDelayMs: 30_000 }],
        nlbPropagationMs: propagationMs,
      },
      { DRAIN_MODE: "connections", DRAIN_QUIET_PERIOD: "0.3", DRAIN_MIN_WAIT: "3.5", DEREGISTRATION_WAIT: "60" },
    );
    const [target] = s.world.targets;
    // Sparse traffic: one short flow a second, so a drain counting only connections would see none.
    await using traffic = new LoadBalancerTraffic(s.world.elbv2.state, target, { everyMs: 1_000, holdMs: 20 });
    await s.process.waitForLog(includes("is healthy"));
    const deregisteredAt = Date.now();
    s.world.deregister();
    const started = await s.process.waitForLog(startsWith("drain started"));
    assert.equal(started.floorSeconds, 3.5);
    assert.equal(started.waitSeconds, 30, "capped by the group's own 30 s deregistration delay, not the 60 s guess");
    const exit = await s.process.exited;
    await app.close(); // the essential sidecar exited: ECS stops the task, the application goes away
    appRunning = false;
    await new Promise((r) => setTimeout(r, propagationMs + 1_000));
    assert.equal(exit.code, 0);
    assert.equal(s.process.logs.find(startsWith("finished"))?.reason, "connections-quiet");
    assert.deepEqual(traffic.refused, [], "no flow may be refused");
    assert.ok(traffic.served.some((at) => at > deregisteredAt), "the NLB sent new flows after the deregistration");
    assert.ok(exit.at - deregisteredAt >= propagationMs, `exited ${exit.at - deregisteredAt} ms after deregistration`);
  } finally {
    if (appRunning) await app.close();
  }
});

Deno.test("process: connections mode floors a drain at 120 s by default when the task has an NLB group, even beside an ALB one", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc", targetGroups: [{ protocol: "HTTP" }, { protocol: "TCP", containerPort: 8081 }] },
    { DRAIN_MODE: "connections", DEREGISTRATION_WAIT: "30" },
  );
  await s.process.waitForLog(includes("in web-1 is healthy"));
  s.world.setState("draining", 0);
  const started = await s.process.waitForLog(startsWith("drain started"));
  assert.equal(started.floorSeconds, 120, "the NLB's default, the larger one");
  assert.equal(started.waitSeconds, 300, "the groups' deregistration delay (ELB's default 300 s), read at start");
  assert.equal((await stopWith(s, "SIGTERM"))?.state, "draining");
});

Deno.test("process: connections mode with only an ALB group, attributes denied: no floor, DEREGISTRATION_WAIT caps, said once", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc", targetGroups: [{ protocol: "HTTPS" }] },
    { DRAIN_MODE: "connections", DRAIN_QUIET_PERIOD: "0.3", DEREGISTRATION_WAIT: "20" },
    (world) => world.elbv2.state.denied.add("DescribeTargetGroupAttributes"),
  );
  const denied = await s.process.waitForLog(includes("DescribeTargetGroupAttributes is not allowed"));
  assert.equal(denied.error, "AccessDenied");
  assert.equal(denied.level, "warning", "an optional permission: a warning, never an error, never silent");
  assert.match(denied.message, /^elasticloadbalancing:DescribeTargetGroupAttributes is not allowed: /);
  assert.match(denied.message, /ends at DEREGISTRATION_WAIT \(20 s\) at the latest/, "what is lost");
  assert.match(denied.message, /Fix: allow it in the task role's policy \(examples\/iam\/nlb-sidecar-\*\.json\)/);
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  const started = await s.process.waitForLog(startsWith("drain started"));
  assert.equal(started.floorSeconds, 0);
  assert.equal(started.waitSeconds, 20);
  const exit = await s.process.exited;
  assert.equal(exit.code, 0);
  assert.equal(s.process.logs.find(startsWith("finished"))?.reason, "connections-quiet");
  assert.equal(s.process.logs.filter(includes("DescribeTargetGroupAttributes is not allowed")).length, 1);
});

Deno.test("process: connections mode, attributes throttled for good: given up on after a bounded wait, DEREGISTRATION_WAIT caps", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc", targetGroups: [{ protocol: "HTTPS" }] },
    { DRAIN_MODE: "connections", DRAIN_QUIET_PERIOD: "0.3", DEREGISTRATION_WAIT: "20" },
    (world) => world.elbv2.state.throttled.add("DescribeTargetGroupAttributes"),
  );
  // Polling every 0.2 s gives 1 s calls: three of them, then the watch starts without the group's delay.
  await s.process.waitForLog(includes("is healthy"), 20_000);
  s.world.setState("draining");
  const started = await s.process.waitForLog(startsWith("drain started"));
  assert.equal(started.waitSeconds, 20, "DEREGISTRATION_WAIT, since the group's own delay could not be read");
  assert.equal((await stopWith(s, "SIGTERM"))?.state, "draining");
});

Deno.test("process: connections mode in bridge mode says at start that it waits the fixed time", async () => {
  await using s = await sidecar({ networkMode: "bridge" }, { DRAIN_MODE: "connections", DEREGISTRATION_WAIT: "0.3" });
  const warning = await s.process.waitForLog(startsWith("DRAIN_MODE=connections is not possible here"));
  assert.match(String(warning.fallback), /bridge/);
  await s.process.waitForLog(includes("is healthy"));
  s.world.setState("draining");
  const exit = await s.process.exited;
  assert.equal(exit.code, 0);
  assert.equal(s.process.logs.find(startsWith("finished"))?.reason, "drain-wait-elapsed");
});

Deno.test("process: health stays 0 through 100% throttling, is 1 after three intervals of permanent errors, 0 while draining", async () => {
  await using s = await sidecar({ networkMode: "awsvpc", targetGroups: [{}, { protocol: "HTTP" }] }, {
    DEREGISTRATION_WAIT: "30",
  });
  await s.process.waitForLog(includes("in web-1 is healthy"));
  await s.process.waitForLog(includes("in web-0 is healthy"));
  const healthy = await health(s);
  assert.equal(healthy.code, 0, healthy.stdout);
  // Three polling intervals (0.2 s) plus the request timeout (2 s) is the window.
  const window = 3 * 200 + 2_000;
  s.world.elbv2.faults.throttleRate = 1;
  await s.process.waitForLog(includes("failed (Throttling)"));
  await new Promise((r) => setTimeout(r, window + 400));
  const throttled = await health(s);
  assert.equal(throttled.code, 0, `AWS throttling must not make ECS replace the task: ${throttled.stdout}`);
  assert.match(throttled.stdout, /Throttling, transient/);
  s.world.elbv2.faults.throttleRate = 0;
  s.world.elbv2.state.denied.add("DescribeTargetHealth");
  await s.process.waitForLog(includes("failed (AccessDenied)"));
  // The throttling slowed the polls (adaptive polling): the window is three intervals of the pace in force.
  const { details } = JSON.parse(await Deno.readTextFile(s.statusFile));
  assert.ok(details.pollIntervalMs > 200, `the pace slowed under throttling: ${details.pollIntervalMs} ms`);
  await new Promise((r) => setTimeout(r, 3 * details.pollIntervalMs + 2_000 + 400));
  const denied = await health(s);
  assert.equal(denied.code, 1, denied.stdout);
  assert.match(denied.stdout, /permanent error \(AccessDenied\)/);
  s.world.elbv2.state.denied.clear();
  s.world.setState("draining", 1);
  await s.process.waitForLog(startsWith("drain started"));
  await new Promise((r) => setTimeout(r, 100));
  const draining = await health(s);
  assert.equal(draining.code, 0, draining.stdout);
  assert.equal(s.process.logs.filter((l) => l.level === "fatal").length, 0);
});

Deno.test("process: throttling that outlasts DISCOVERY_TIMEOUT is retried, health stays 0, the watch starts once AWS recovers", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc" },
    { DISCOVERY_TIMEOUT: "1" },
    (world) => world.elbv2.faults.throttleRate = 1,
  );
  await s.process.waitForLog(startsWith("elasticloadbalancing:DescribeTargetGroups failed (Throttling)"));
  await new Promise((r) => setTimeout(r, 1_000 + 2_000 + 5_000 + 500)); // past the deadline, timeout and slack
  const retrying = await health(s);
  assert.equal(retrying.code, 0, `a throttled discovery must not make ECS replace the task: ${retrying.stdout}`);
  assert.match(retrying.stdout, /past DISCOVERY_TIMEOUT.*Throttling/);
  s.world.elbv2.faults.throttleRate = 0;
  await s.process.waitForLog(includes("is healthy"), 30_000);
  assert.equal(s.process.logs.filter(startsWith("discovery failed")).length, 0);
});

Deno.test("process: task metadata {} at start is retried, not a crash", async () => {
  let complete: TaskMetadata | undefined;
  await using s = await sidecar({ networkMode: "awsvpc" }, {}, (world) => {
    complete = world.metadata.task;
    world.metadata.task = {} as TaskMetadata;
  });
  await s.process.waitForLog(startsWith("task metadata failed (IncompleteMetadataError)"));
  s.world.metadata.task = complete!;
  await s.process.waitForLog(includes("is healthy"));
  assert.equal(s.process.logs.filter((l) => l.level === "fatal" || l.level === "error").length, 0);
});

Deno.test({
  name: "process: read-only root with no volume -> the status goes to /dev/shm, health is 0 and watches on",
  ignore: !canUnshareMounts,
  fn: async () => {
    await using s = await sidecar({ networkMode: "awsvpc" }, {}, () => {}, readOnlyRoot("rw"));
    const warning = await s.process.waitForLog(includes("not writable"));
    assert.match(String(warning.detail), /read-only file system/i);
    assert.equal(warning.fallback, fallbackStatusPath(s.statusFile, await containerKey(s.env)), "the container's own");
    await s.process.waitForLog(includes("is healthy"));
    const verdict = await health(s, s.process.pid);
    assert.equal(verdict.code, 0, verdict.stdout + verdict.stderr);
    assert.match(verdict.stdout, /watching/);
  },
});

/** A folder that stands in for the /dev/shm of containers, shared by all that mount it; removed at disposal. */
async function devShmFolder(): Promise<AsyncDisposable & { readonly path: string }> {
  const path = await Deno.makeTempDir({ prefix: "nlb-sidecar-shm-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** A status an earlier sidecar process left: longer than any the daemon writes while it watches. */
const STALE_STATUS = JSON.stringify({
  role: "nlb-sidecar",
  pid: 4_194_304, // above the kernel's largest pid_max: no process has it
  updatedAt: 0,
  state: "discovery-failed",
  details: { cause: "an earlier process's failure ".repeat(200) },
}) + "\n";

Deno.test({
  name:
    "process: read-only root, a longer stale status left in /dev/shm by an earlier process -> health is 0 while watching",
  ignore: !canUnshareMounts,
  fn: async () => {
    await using devShm = await devShmFolder();
    await using s = await sidecar({ networkMode: "awsvpc" }, {}, async (world) => {
      // Where this container's daemon writes its STATUS_FILE (<dir>/status.json) when unwritable (the
      // daemon runs with this host's hostname), and where an older version wrote it.
      const own = fallbackStatusPath("/tmp/status.json", await containerKey(world.env));
      for (const path of [own, "/dev/shm/status.json"]) {
        await Deno.writeTextFile(path.replace(/^\/dev\/shm/, devShm.path), STALE_STATUS);
      }
    }, readOnlyRoot({ sharedFolder: devShm.path }));
    await s.process.waitForLog(includes("not writable"));
    await s.process.waitForLog(includes("is healthy"));
    await new Promise((r) => setTimeout(r, 500)); // a few more polls, each rewriting the status
    const verdict = await health(s, s.process.pid);
    assert.equal(verdict.code, 0, verdict.stdout + verdict.stderr);
    assert.match(verdict.stdout, /watching/);
  },
});

Deno.test({
  name: "process: two sidecars with read-only roots share one /dev/shm -> each health reports its own state",
  ignore: !canUnshareMounts,
  fn: async () => {
    await using devShm = await devShmFolder();
    // ipcMode host: two tasks' sidecars on one instance, both with the default STATUS_FILE name.
    await using watching = await sidecar(
      { networkMode: "host" },
      {},
      () => {},
      readOnlyRoot({ sharedFolder: devShm.path }),
    );
    await using failed = await sidecar(
      { networkMode: "host", inService: false },
      {},
      () => {},
      readOnlyRoot({ sharedFolder: devShm.path }),
    );
    await failed.process.waitForLog(startsWith("ON_DISCOVERY_FAILURE=idle"));
    await watching.process.waitForLog(includes("is healthy"));
    await new Promise((r) => setTimeout(r, 500)); // the watching one writes its status at every poll
    const [healthy, unhealthy] = await Promise.all([
      health(watching, watching.process.pid),
      health(failed, failed.process.pid),
    ]);
    assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
    assert.match(healthy.stdout, /watching/);
    assert.equal(unhealthy.code, 1, unhealthy.stdout + unhealthy.stderr);
    assert.match(unhealthy.stdout, /discovery failed/);
    const files = [...Deno.readDirSync(devShm.path)].map((entry) => entry.name).sort();
    assert.deepEqual(
      files,
      [
        basename(fallbackStatusPath(failed.statusFile, await containerKey(failed.env))),
        basename(fallbackStatusPath(watching.statusFile, await containerKey(watching.env))),
      ].sort(),
      "one file each",
    );
  },
});

Deno.test({
  name: "process: read-only root and read-only /dev/shm -> health is 1 and says what is not writable and the fix",
  ignore: !canUnshareMounts,
  fn: async () => {
    await using s = await sidecar({ networkMode: "awsvpc" }, {}, () => {}, readOnlyRoot("ro"));
    const error = await s.process.waitForLog(includes("cannot write the status file"));
    assert.match(String(error.fix), /mount a volume at .*STATUS_FILE/);
    const verdict = await health(s, s.process.pid);
    assert.equal(verdict.code, 1, verdict.stdout);
    assert.match(verdict.stdout, /not writable: read-only file system/i);
    assert.match(verdict.stdout, /mount a volume at .* or set STATUS_FILE/);
  },
});

Deno.test("process: CODE_DEPLOY blue/green -> watches the target group of the task's own task set and drains", async () => {
  await using s = await sidecar({ networkMode: "awsvpc", codeDeploy: true }, { DEREGISTRATION_WAIT: "0.3" });
  await s.process.waitForLog(includes("in web-0 is healthy"));
  assert.equal(s.process.logs.filter(includes("web-blue")).length, 0, "the blue group is not this task's");
  s.world.setState("draining");
  assert.equal((await s.process.exited).code, 0);
  assert.equal(s.process.logs.find(startsWith("finished"))?.reason, "drain-wait-elapsed");
});

Deno.test("process: a DescribeTargetHealth answer that trickles costs one request timeout; the drain is still seen", async () => {
  await using s = await sidecar({ networkMode: "awsvpc" }, { DEREGISTRATION_WAIT: "0.3" });
  await s.process.waitForLog(includes("is healthy"));
  s.world.elbv2.faults.failNext(1, "trickle"); // a byte a second of a body of several hundred bytes
  s.world.setState("draining");
  const failed = await s.process.waitForLog(includes("failed (TimeoutError)"));
  assert.equal(failed.transient, true);
  await s.process.waitForLog(startsWith("drain started"), 20_000);
  assert.equal((await s.process.exited).code, 0);
});

Deno.test("process: health without a status file is 1", async () => {
  const statusFile = "/tmp/nlb-sidecar-test-does-not-exist/status.json";
  const result = await health({
    statusFile,
    env: { STATUS_FILE: statusFile, ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/x" },
  });
  assert.equal(result.code, 1);
  assert.match(result.stdout, /no status file/);
});

Deno.test("process: discovery failure with ON_DISCOVERY_FAILURE=idle reports unhealthy and waits for SIGTERM", async () => {
  await using s = await sidecar({ networkMode: "awsvpc", inService: false });
  const failed = await s.process.waitForLog(startsWith("discovery failed"));
  assert.equal(failed.kind, "not-in-service");
  assert.match(String(failed.fix), /service/);
  await s.process.waitForLog(startsWith("ON_DISCOVERY_FAILURE=idle"));
  const verdict = await health(s);
  assert.equal(verdict.code, 1);
  assert.match(verdict.stdout, /discovery failed/);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await stopWith(s, "SIGTERM"))?.state, "discovery-failed");
});

Deno.test("process: discovery failure with ON_DISCOVERY_FAILURE=exit exits 1 and names cause and fix", async () => {
  await using s = await sidecar(
    { networkMode: "awsvpc" },
    { ON_DISCOVERY_FAILURE: "exit" },
    (world) => world.ecs.state.denied.add("DescribeServices"),
  );
  const exit = await s.process.exited;
  assert.equal(exit.code, 1);
  const failed = s.process.logs.find(startsWith("discovery failed"))!;
  assert.equal(failed.kind, "access-denied");
  assert.match(String(failed.cause), /ecs:DescribeServices/);
  assert.match(String(failed.fix), /task role/);
});

Deno.test("process: --help lists every setting by its environment name", async () => {
  const result = await runRoleToEnd("nlb-sidecar", { args: ["--help"] });
  assert.equal(result.code, 0);
  for (
    const name of [
      "DEREGISTRATION_WAIT",
      "POLLING_FREQUENCY",
      "TARGET_CONTAINER_NAME",
      "DRAIN_MODE",
      "DRAIN_MIN_WAIT",
      "DRAIN_QUIET_PERIOD",
      "DISCOVERY_TIMEOUT",
      "ON_DISCOVERY_FAILURE",
      "AWS_REGION",
      "ECS_CONTAINER_METADATA_URI_V4",
      "STATUS_FILE",
      "LOG_LEVEL",
      "LOG_FORMAT",
    ]
  ) assert.match(result.stdout, new RegExp(`env ${name}\\b`));
  assert.match(result.stdout, /health/);
});
