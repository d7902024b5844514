/**
 * The nlb-sidecar as its own process, with exactly the permissions and V8 flags of its binary
 * (lib/roles.ts), against the emulated world: every outcome and its exit code.
 */
import assert from "node:assert/strict";
import { type LogEntry, runRoleToEnd, spawnRole } from "../../sim/role_process.ts";
import { type EcsWorld, startEcsWorld, type WorldOptions } from "../../sim/ecs_world.ts";
import { listenLoopback } from "./support.ts";

const FAST = { POLLING_FREQUENCY: "0.2", LOG_LEVEL: "debug" };

interface Sidecar extends AsyncDisposable {
  readonly world: EcsWorld;
  readonly process: ReturnType<typeof spawnRole>;
  readonly statusFile: string;
}

async function sidecar(
  worldOptions: WorldOptions,
  env: Record<string, string> = {},
  arrange: (world: EcsWorld) => void = () => {},
): Promise<Sidecar> {
  const world = await startEcsWorld(worldOptions);
  arrange(world);
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-test-" });
  const statusFile = `${dir}/status.json`;
  const process = spawnRole("nlb-sidecar", { env: { ...world.env, ...FAST, STATUS_FILE: statusFile, ...env } });
  return {
    world,
    process,
    statusFile,
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

function health(statusFile: string) {
  return runRoleToEnd("nlb-sidecar", {
    args: ["health"],
    env: { STATUS_FILE: statusFile, ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/x" },
  });
}

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
  const verdict = await health(s.statusFile);
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
    [{ ...base, POLLING_FREQUENCY: "0" }, [], /POLLING_FREQUENCY.*greater than 0/],
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

Deno.test("process: connections mode holds the drain while real TCP connections are open, exits once they close", async () => {
  const app = listenLoopback();
  try {
    const quiet = 0.5;
    await using s = await sidecar(
      { networkMode: "awsvpc", targetGroups: [{ containerPort: app.port }] },
      { DRAIN_MODE: "connections", DRAIN_QUIET_PERIOD: String(quiet), DEREGISTRATION_WAIT: "30" },
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

Deno.test("process: connections mode in bridge mode says at start that it waits the fixed time", async () => {
  await using s = await sidecar({ networkMode: "bridge" }, { DRAIN_MODE: "connections", DEREGISTRATION_WAIT: "0.3" });
  const warning = await s.process.waitForLog(startsWith("DRAIN_MODE=connections is not possible here"));
  assert.match(String(warning.fallback), /bridge/);
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
  const healthy = await health(s.statusFile);
  assert.equal(healthy.code, 0, healthy.stdout);
  // Three polling intervals (0.2 s) plus the request timeout (2 s) is the window.
  const window = 3 * 200 + 2_000;
  s.world.elbv2.faults.throttleRate = 1;
  await s.process.waitForLog(includes("failed (Throttling)"));
  await new Promise((r) => setTimeout(r, window + 400));
  const throttled = await health(s.statusFile);
  assert.equal(throttled.code, 0, `AWS throttling must not make ECS replace the task: ${throttled.stdout}`);
  assert.match(throttled.stdout, /Throttling, transient/);
  s.world.elbv2.faults.throttleRate = 0;
  s.world.elbv2.state.denied.add("DescribeTargetHealth");
  await s.process.waitForLog(includes("failed (AccessDenied)"));
  await new Promise((r) => setTimeout(r, window + 400));
  const denied = await health(s.statusFile);
  assert.equal(denied.code, 1, denied.stdout);
  assert.match(denied.stdout, /permanent error \(AccessDenied\)/);
  s.world.elbv2.state.denied.clear();
  s.world.setState("draining", 1);
  await s.process.waitForLog(startsWith("drain started"));
  await new Promise((r) => setTimeout(r, 100));
  const draining = await health(s.statusFile);
  assert.equal(draining.code, 0, draining.stdout);
  assert.equal(s.process.logs.filter((l) => l.level === "fatal").length, 0);
});

Deno.test("process: health without a status file is 1", async () => {
  const result = await health("/tmp/nlb-sidecar-test-does-not-exist/status.json");
  assert.equal(result.code, 1);
  assert.match(result.stdout, /no status file/);
});

Deno.test("process: discovery failure with ON_DISCOVERY_FAILURE=idle reports unhealthy and waits for SIGTERM", async () => {
  await using s = await sidecar({ networkMode: "awsvpc", inService: false });
  const failed = await s.process.waitForLog(startsWith("discovery failed"));
  assert.equal(failed.kind, "not-in-service");
  assert.match(String(failed.fix), /service/);
  await s.process.waitForLog(startsWith("ON_DISCOVERY_FAILURE=idle"));
  const verdict = await health(s.statusFile);
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
      "DRAIN_QUIET_PERIOD",
      "DISCOVERY_TIMEOUT",
      "ON_DISCOVERY_FAILURE",
      "AWS_REGION",
      "ECS_CONTAINER_METADATA_URI_V4",
      "STATUS_FILE",
      "LOG_LEVEL",
      "LOG_FORMAT",
    ]
  ) assert.match(result.stdout, new RegExp(`env ${name} `));
  assert.match(result.stdout, /health/);
});
