/**
 * The helper as its own process, with its binary's permissions, against the Envoy emulator: real
 * signals, real waits (fractions of a second), real connections. Timing bounds are generous; what
 * they check is the order of events and which wait decided the exit.
 */
import assert from "node:assert/strict";
import { DownstreamConnection, unusedPort } from "../../sim/downstream.ts";
import { type EnvoyEmulator, startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { startSimServer } from "../../sim/http_server.ts";
import { createTestCa } from "../../sim/region_endpoint.ts";
import { type LogEntry, type RoleProcess, runRoleToEnd, spawnRole } from "../../sim/role_process.ts";
import { within } from "./support.ts";

const byStep = (step: string) => (entry: LogEntry) => entry.step === step;

function helper(env: Record<string, string>) {
  return spawnRole("appmesh-helper", { env });
}

/** A helper whose startup stage is over (Envoy live, no app check). */
async function started(env: Record<string, string>): Promise<RoleProcess> {
  const role = helper(env);
  try {
    await role.waitForLog(byStep("startup-complete"));
  } catch (error) {
    await role[Symbol.asyncDispose]();
    throw error;
  }
  return role;
}

/** A helper in connections mode whose startup stage is over (Envoy live, no app check). */
function startedInConnectionsMode(
  envoy: EnvoyEmulator,
  seconds: { delay: number; timeout: number; quiet: number },
): Promise<RoleProcess> {
  return started({
    DRAIN_MODE: "connections",
    DRAIN_DELAY: String(seconds.delay),
    DRAIN_TIMEOUT: String(seconds.timeout),
    DRAIN_QUIET_PERIOD: String(seconds.quiet),
    ENVOY_ADMIN_URL: envoy.adminUrl,
  });
}

/** A stand-in app whose health check answers `status.value` (change it at any time). */
async function startApp(initial: number) {
  const status = { value: initial };
  const server = await startSimServer({ handle: () => ({ status: status.value, body: "app\n" }) });
  return Object.assign(server, { status });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function assertBetween(actualMs: number, lowMs: number, highMs: number, what: string): void {
  assert.ok(actualMs >= lowMs && actualMs <= highMs, `${what}: ${actualMs} ms, expected ${lowMs}..${highMs} ms`);
}

Deno.test("fixed mode: the fail call lands at DRAIN_DELAY, the exit at DRAIN_DELAY + DRAIN_TIMEOUT; later signals are ignored", async () => {
  await using envoy = await startEnvoyEmulator();
  await using app = await startApp(503);
  await using role = helper({
    DRAIN_DELAY: "0.6",
    DRAIN_TIMEOUT: "0.6",
    ENVOY_ADMIN_URL: envoy.adminUrl,
    APP_HEALTHCHECK_URL: `${app.url}/health`,
  });
  await role.waitForLog(byStep("envoy-startup"));
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  await role.waitForLog(byStep("drain-delay"));
  role.kill("SIGTERM");
  role.kill("SIGINT");
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  const fail = envoy.calls.find((c) => c.target === "/healthcheck/fail");
  assert.ok(fail, "Envoy was told to fail its health check");
  assert.equal(fail.method, "POST");
  assertBetween(fail.at - signalledAt, 550, 1_600, "fail call after SIGTERM");
  assertBetween(exit.at - signalledAt, 1_150, 2_700, "exit after SIGTERM");
  assert.ok(exit.at - fail.at >= 550, "DRAIN_TIMEOUT is waited after the fail call");
  assert.ok(!envoy.calls.some((c) => c.target.startsWith("/drain_listeners")), "fixed mode does not drain listeners");
  assert.equal(envoy.state, "DRAINING");

  const steps = role.logs.filter((l) => typeof l.step === "string").map((l) => l.step);
  const shutdownSteps = steps.slice(steps.indexOf("signal"));
  assert.deepEqual(shutdownSteps.filter((s) => s !== "signal"), [
    "app-check",
    "drain-delay",
    "healthcheck-fail",
    "drain-timeout",
    "exit",
  ]);
  const appCheck = role.logs.find(byStep("app-check"))!;
  assert.equal(appCheck.appAnswer, "HTTP 503", "any HTTP answer means the app is still there");
  const ignored = role.logs.filter((l) => /ignored/.test(l.message));
  assert.deepEqual(ignored.map((l) => l.signal).sort(), ["SIGINT", "SIGTERM"], "both later signals, in either order");
  const exitLine = role.logs.find(byStep("exit"))!;
  assert.equal(exitLine.reason, "drain-timeout");
  assert.equal(exitLine.envoyFailed, true);
  assert.equal(typeof exitLine.waitedSeconds, "number");
});

Deno.test("app configured but gone (connection refused): exit 0 at once, Envoy is never told", async () => {
  await using envoy = await startEnvoyEmulator();
  await using role = helper({
    DRAIN_DELAY: "5",
    DRAIN_TIMEOUT: "5",
    ENVOY_ADMIN_URL: envoy.adminUrl,
    PORT: String(unusedPort()),
    HEALTHCHECK_PATH: "/health",
  });
  await role.waitForLog(byStep("app-startup"));
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 5_000);
  assert.equal(exit.code, 0);
  assert.ok(exit.at - signalledAt < 2_500, `exited ${exit.at - signalledAt} ms after SIGTERM, not after DRAIN_DELAY`);
  assert.ok(!envoy.calls.some((c) => c.method === "POST"), "no call that changes Envoy");
  assert.equal(role.logs.find(byStep("exit"))?.reason, "app-gone");
  assert.match(String(role.logs.find(byStep("app-check"))?.appAnswer), /^no answer: .*connection refused/i);
  assert.equal(role.logs.filter(byStep("app-check")).length, 1, "a refusal needs no second check");
});

Deno.test("app that accepts and never answers: one check to confirm the timeout, then exit 0 at once, Envoy never told", async () => {
  await using envoy = await startEnvoyEmulator();
  await using app = await startSimServer({ handle: () => new Promise<never>(() => {}) });
  await using role = helper({
    DRAIN_DELAY: "10",
    DRAIN_TIMEOUT: "10",
    ENVOY_ADMIN_URL: envoy.adminUrl,
    APP_HEALTHCHECK_URL: `${app.url}/health`,
  });
  // Right after a startup probe: the next one is a second away, so every request from here is the shutdown's.
  await role.waitForLog(byStep("app-startup"));
  const requestsBefore = app.requestCount;
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  assertBetween(exit.at - signalledAt, 3_800, 6_500, "exit after two checks of 2 s, long before DRAIN_DELAY");
  assert.equal(app.requestCount - requestsBefore, 2, "the timed-out check was asked once more");
  const checks = role.logs.filter(byStep("app-check"));
  assert.deepEqual(checks.map((l) => l.appAnswer), [
    "no answer: no answer within 2000 ms",
    "no answer: no answer within 2000 ms",
  ]);
  assert.match(checks[0].message, /asking once more/);
  assert.ok(!envoy.calls.some((c) => c.method === "POST"), "no call that changes Envoy");
  assert.equal(role.logs.find(byStep("exit"))?.reason, "app-gone");
});

Deno.test("app behind a certificate the helper does not trust: no proof it is gone, so the drain goes on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "appmesh-helper-tls-" });
  try {
    const ca = await createTestCa(dir);
    await using envoy = await startEnvoyEmulator();
    await using app = Deno.serve(
      { hostname: "127.0.0.1", port: 0, cert: ca.untrustedCertPem, key: ca.untrustedKeyPem, onListen() {} },
      () => new Response("ok\n"),
    );
    await using role = helper({
      DRAIN_DELAY: "0.3",
      DRAIN_TIMEOUT: "0.3",
      ENVOY_ADMIN_URL: envoy.adminUrl,
      APP_HEALTHCHECK_URL: `https://127.0.0.1:${app.addr.port}/health`,
    });
    await role.waitForLog(byStep("app-startup"));
    const signalledAt = Date.now();
    role.kill("SIGTERM");
    const exit = await within(role.exited, "the helper to exit", 10_000);

    assert.equal(exit.code, 0);
    assertBetween(exit.at - signalledAt, 550, 2_500, "exit after DRAIN_DELAY + DRAIN_TIMEOUT");
    const check = role.logs.find(byStep("app-check"))!;
    assert.equal(check.level, "warning");
    assert.match(String(check.appAnswer), /certificate/i, "the log line says what failed");
    assert.match(check.message, /does not prove it gone: draining/);
    assert.ok(envoy.calls.some((c) => c.target === "/healthcheck/fail"), "Envoy was told to fail its health check");
    assert.equal(role.logs.find(byStep("exit"))?.reason, "drain-timeout");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fixed mode: a fail call Envoy does not take is retried briefly, out of the DRAIN_TIMEOUT wait", async () => {
  await using envoy = await startEnvoyEmulator();
  await using role = await started({ DRAIN_DELAY: "0.3", DRAIN_TIMEOUT: "1.2", ENVOY_ADMIN_URL: envoy.adminUrl });
  const requestsBefore = envoy.admin.requestCount;
  envoy.admin.faults.failNext(1, "server-error");
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  assert.equal(envoy.admin.requestCount - requestsBefore, 2, "the failed attempt and its retry, nothing else");
  const fails = envoy.calls.filter((c) => c.target === "/healthcheck/fail");
  assert.deepEqual(fails.map((c) => `${c.method} ${c.status}`), ["POST 200"], "the retry landed");
  const lines = role.logs.filter(byStep("healthcheck-fail"));
  assert.deepEqual(lines.map((l) => l.level), ["warning", "info"]);
  assert.match(String(lines[0].envoyAnswer), /HTTP 500/);
  assert.ok(Number(lines[0].waitedSeconds) >= 0.3, "the first attempt comes after DRAIN_DELAY");
  assert.equal(envoy.state, "DRAINING");
  assert.equal(role.logs.find(byStep("exit"))?.envoyFailed, true);
  assertBetween(exit.at - signalledAt, 1_450, 2_700, "exit still at DRAIN_DELAY + DRAIN_TIMEOUT after the signal");
});

Deno.test("SIGINT as the first signal starts the shutdown stage like SIGTERM", async () => {
  await using envoy = await startEnvoyEmulator();
  await using role = await started({ DRAIN_DELAY: "0.3", DRAIN_TIMEOUT: "0.3", ENVOY_ADMIN_URL: envoy.adminUrl });
  const signalledAt = Date.now();
  role.kill("SIGINT");
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  assert.equal(exit.signal, null, "the helper exits on its own, not killed by the signal");
  assert.equal(role.logs.find(byStep("signal"))?.signal, "SIGINT");
  assert.ok(envoy.calls.some((c) => c.target === "/healthcheck/fail"), "Envoy was told to fail its health check");
  assertBetween(exit.at - signalledAt, 550, 2_000, "exit after DRAIN_DELAY + DRAIN_TIMEOUT");
  assert.equal(role.logs.find(byStep("exit"))?.reason, "drain-timeout");
});

Deno.test("Envoy down: the failure is logged and both waits still happen; exit 0", async () => {
  await using role = helper({
    DRAIN_DELAY: "0.4",
    DRAIN_TIMEOUT: "0.8",
    ENVOY_ADMIN_URL: `http://127.0.0.1:${unusedPort()}`,
  });
  await role.waitForLog(byStep("envoy-startup"));
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 10_000);
  assert.equal(exit.code, 0);
  assertBetween(exit.at - signalledAt, 1_150, 2_700, "exit after SIGTERM");
  const failure = role.logs.find((l) => l.step === "healthcheck-fail" && l.level === "error");
  assert.ok(failure, "the failed fail call is logged as an error");
  assert.match(String(failure.envoyAnswer), /did not answer/);
  const firstAttempt = role.logs.find(byStep("healthcheck-fail"))!;
  assert.ok(Number(firstAttempt.waitedSeconds) >= 0.4, `first fail attempt at ${firstAttempt.waitedSeconds} s`);
  assert.equal(role.logs.find(byStep("exit"))?.envoyFailed, false);
});

Deno.test("connections mode: exits DRAIN_QUIET_PERIOD after the last inbound connection closed mid-drain", async () => {
  await using envoy = await startEnvoyEmulator();
  await using role = await startedInConnectionsMode(envoy, { delay: 0.4, timeout: 20, quiet: 0.5 });
  const idle = await DownstreamConnection.open(envoy.ingressPort);
  const busy = await DownstreamConnection.open(envoy.ingressPort);
  const slowAnswer = busy.request("/slow?ms=1600");
  const signalledAt = Date.now();
  role.kill("SIGTERM");

  const idleEndedAt = await within(idle.ended, "the drain to close the idle connection", 5_000);
  assert.ok(idleEndedAt - signalledAt >= 350, "the idle connection is closed by the drain, not before");
  assert.deepEqual(await within(slowAnswer, "the slow answer", 5_000), { status: 200, connectionClose: true });
  const lastClosedAt = await within(busy.ended, "the busy connection to close", 5_000);
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  assertBetween(exit.at - lastClosedAt, 450, 2_000, "exit after the last connection closed");
  assert.ok(exit.at - signalledAt < 6_000, "far earlier than DRAIN_DELAY + DRAIN_TIMEOUT");
  assert.deepEqual(envoy.calls.filter((c) => c.method === "POST").map((c) => c.target), [
    "/healthcheck/fail",
    "/drain_listeners?graceful&inboundonly",
  ]);
  const counts = role.logs.filter(byStep("drain-connections")).map((l) => l.connectionsLeft);
  assert.equal(counts.at(-1), 0);
  assert.ok(counts.some((c) => typeof c === "number" && c > 0), `the busy connection was seen: ${counts}`);
  const exitLine = role.logs.find(byStep("exit"))!;
  assert.equal(exitLine.reason, "connections-drained");
  assert.equal(exitLine.connectionsLeft, 0);
  assert.equal(exitLine.listenersDrained, true);
});

Deno.test("connections mode: short connections that keep arriving hold the helper until they stop", async () => {
  await using envoy = await startEnvoyEmulator();
  const quietMs = 500;
  await using role = await startedInConnectionsMode(envoy, { delay: 0.3, timeout: 20, quiet: quietMs / 1000 });
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  // One request per connection, each over within milliseconds: the reads every 0.5 s almost never see
  // one open, and the traffic goes on well past the quiet period after the fail call.
  let lastClosedAt = 0;
  while (Date.now() < signalledAt + 2_500) {
    const connection = await DownstreamConnection.open(envoy.ingressPort);
    assert.equal((await connection.request("/")).status, 200);
    connection.close();
    lastClosedAt = await connection.ended;
    await sleep(150);
  }
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  assertBetween(exit.at - lastClosedAt, quietMs - 100, quietMs + 1_000, "exit after the last connection closed");
  const reads = role.logs.filter(byStep("drain-connections"));
  assert.ok(
    reads.some((l) => l.connectionsLeft === 0 && l.connectionsArriving === true),
    `reads saw no connection open while connections kept arriving: ${JSON.stringify(reads)}`,
  );
  assert.equal(role.logs.find(byStep("exit"))?.reason, "connections-drained");
});

Deno.test("connections mode with Envoy's gradual drain: exits DRAIN_QUIET_PERIOD after the last idle connection closes", async () => {
  await using envoy = await startEnvoyEmulator({ drainTimeMs: 1_500 });
  const quietMs = 500;
  await using role = await startedInConnectionsMode(envoy, { delay: 0.3, timeout: 20, quiet: quietMs / 1000 });
  const idle = await Promise.all([1, 2, 3].map(() => DownstreamConnection.open(envoy.ingressPort)));
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const closes = await within(Promise.all(idle.map((c) => c.ended)), "the drain to close every idle connection", 5_000);
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  const [first, last] = [Math.min(...closes), Math.max(...closes)];
  assert.ok(last - first >= 700, `the closes are spread over the drain time: ${closes.map((c) => c - signalledAt)}`);
  assertBetween(exit.at - last, quietMs - 100, quietMs + 1_000, "exit after the last idle connection closed");
  assert.equal(role.logs.find(byStep("exit"))?.reason, "connections-drained");
});

Deno.test("connections mode: an Envoy without /drain_listeners is logged, the exit line says so, the drain still ends", async () => {
  await using envoy = await startEnvoyEmulator({ drainListeners: false });
  await using role = await startedInConnectionsMode(envoy, { delay: 0.2, timeout: 20, quiet: 0.3 });
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  assert.ok(exit.at - signalledAt < 5_000, "the fail call landed, so the drain ends on quiet, not DRAIN_TIMEOUT");
  assert.deepEqual(envoy.calls.filter((c) => c.method === "POST").map((c) => `${c.target} ${c.status}`), [
    "/healthcheck/fail 200",
    "/drain_listeners?graceful&inboundonly 404",
  ], "a 404 is not retried");
  const failure = role.logs.find(byStep("drain-listeners"))!;
  assert.equal(failure.level, "error");
  assert.match(String(failure.envoyAnswer), /HTTP 404/);
  const exitLine = role.logs.find(byStep("exit"))!;
  assert.equal(exitLine.envoyFailed, true);
  assert.equal(exitLine.listenersDrained, false);
  assert.equal(exitLine.reason, "connections-drained");
});

Deno.test("connections mode: a connection that never closes holds the helper until DRAIN_TIMEOUT", async () => {
  await using envoy = await startEnvoyEmulator();
  await using role = await startedInConnectionsMode(envoy, { delay: 0.2, timeout: 1, quiet: 0.2 });
  const busy = await DownstreamConnection.open(envoy.ingressPort);
  const answer = busy.request("/slow?ms=8000").catch(() => undefined);
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 10_000);
  assert.equal(exit.code, 0);
  assertBetween(exit.at - signalledAt, 1_150, 2_900, "exit after SIGTERM");
  const exitLine = role.logs.find(byStep("exit"))!;
  assert.equal(exitLine.reason, "drain-timeout");
  assert.equal(exitLine.connectionsLeft, 1);
  busy.close();
  await answer;
});

Deno.test("startup stage: logs when Envoy first reports LIVE and when the app first answers", async () => {
  await using envoy = await startEnvoyEmulator({ init: "INITIALIZING" });
  await using app = await startApp(503);
  await using role = helper({
    DRAIN_DELAY: "0",
    DRAIN_TIMEOUT: "0",
    ENVOY_ADMIN_URL: envoy.adminUrl,
    PORT: String(app.port),
    HEALTHCHECK_PATH: "/ready",
  });
  const waitingForEnvoy = await role.waitForLog(byStep("envoy-startup"));
  assert.equal(waitingForEnvoy.envoyAnswer, "INITIALIZING");
  const waitingForApp = await role.waitForLog(byStep("app-startup"));
  assert.equal(waitingForApp.appAnswer, "HTTP 503");
  envoy.init = "INITIALIZED";
  const live = await role.waitForLog((l) => l.step === "envoy-startup" && l.envoyAnswer === "LIVE");
  assert.equal(live.message, "Envoy is live");
  assert.match(String(live.envoyVersion), /\/1\.\d+\.\d+\//);
  app.status.value = 200;
  const appReady = await role.waitForLog((l) => l.step === "app-startup" && l.appAnswer === "HTTP 200");
  assert.equal(appReady.message, "the app answers its health check");
  await role.waitForLog(byStep("startup-complete"));
  const waitingLines = role.logs.filter((l) => l.step === "envoy-startup" && l.envoyAnswer === "INITIALIZING");
  assert.equal(waitingLines.length, 1, "an unchanged answer is logged once, not every second");
  role.kill("SIGTERM");
  assert.equal((await within(role.exited, "the helper to exit", 5_000)).code, 0);
});

Deno.test("a drain longer than 110 s in all is warned about at start", async () => {
  await using role = helper({
    DRAIN_DELAY: "100",
    DRAIN_TIMEOUT: "20",
    ENVOY_ADMIN_URL: `http://127.0.0.1:${unusedPort()}`,
  });
  const warning = await role.waitForLog((l) => l.level === "warning" && l.step === "settings");
  assert.match(warning.message, /DRAIN_DELAY \+ DRAIN_TIMEOUT is 120 s/);
});

Deno.test("bad settings: exit 2 before doing anything, stderr names the setting", async () => {
  const [mode, pair] = await Promise.all([
    runRoleToEnd("appmesh-helper", { env: { DRAIN_MODE: "sometimes" } }),
    runRoleToEnd("appmesh-helper", { env: { HEALTHCHECK_PATH: "/health" } }),
  ]);
  assert.equal(mode.code, 2);
  assert.match(mode.stderr, /^ecs-appmesh-helper: configuration error: DRAIN_MODE="sometimes": expected one of/);
  assert.equal(mode.stdout, "");
  assert.equal(pair.code, 2);
  assert.match(pair.stderr, /PORT \(or --port\): is required when HEALTHCHECK_PATH is set/);
});
