/**
 * The helper as its own process, with its binary's permissions, against the Envoy emulator: real
 * signals, real waits (fractions of a second), real connections. Timing bounds are generous; what
 * they check is the order of events and which wait decided the exit.
 */
import assert from "node:assert/strict";
import type { DrainMode } from "../../lib/appmesh_helper/machine.ts";
import { DownstreamConnection, unusedPort } from "../../sim/downstream.ts";
import { type EnvoyEmulator, startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { startSimServer } from "../../sim/http_server.ts";
import { createTestCa } from "../../sim/region_endpoint.ts";
import { type LogEntry, type RoleProcess, runRoleToEnd, spawnRole } from "../../sim/role_process.ts";
import { until, within } from "./support.ts";

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
  assertBetween(fail.at - signalledAt, 550, 4_000, "fail call after SIGTERM");
  assertBetween(exit.at - signalledAt, 1_150, 6_000, "exit after SIGTERM");
  // The deadline is anchored to the signal, so a fail call that lands late (a loaded machine) shortens the wait after it.
  assert.ok(exit.at > fail.at, "the exit waits for the deadline after the fail call");
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
    DRAIN_DELAY: "20",
    DRAIN_TIMEOUT: "20",
    ENVOY_ADMIN_URL: envoy.adminUrl,
    PORT: String(unusedPort()),
    HEALTHCHECK_PATH: "/health",
  });
  await role.waitForLog(byStep("app-startup"));
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 15_000);
  assert.equal(exit.code, 0);
  assert.ok(exit.at - signalledAt < 10_000, `exited ${exit.at - signalledAt} ms after SIGTERM, not after DRAIN_DELAY`);
  assert.ok(!envoy.calls.some((c) => c.method === "POST"), "no call that changes Envoy");
  assert.equal(role.logs.find(byStep("exit"))?.reason, "app-gone");
  assert.match(String(role.logs.find(byStep("app-check"))?.appAnswer), /^no answer: .*connection refused/i);
  assert.equal(role.logs.filter(byStep("app-check")).length, 1, "a refusal needs no second check");
});

Deno.test("app that accepts and never answers: one check to confirm the timeout, then exit 0 at once, Envoy never told", async () => {
  await using envoy = await startEnvoyEmulator();
  await using app = await startSimServer({ handle: () => new Promise<never>(() => {}) });
  await using role = helper({
    DRAIN_DELAY: "30",
    DRAIN_TIMEOUT: "30",
    ENVOY_ADMIN_URL: envoy.adminUrl,
    APP_HEALTHCHECK_URL: `${app.url}/health`,
  });
  // Right after a startup probe: the next one is a second away, so every request from here is the shutdown's.
  await role.waitForLog(byStep("app-startup"));
  const requestsBefore = app.requestCount;
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 20_000);

  assert.equal(exit.code, 0);
  assertBetween(exit.at - signalledAt, 3_800, 15_000, "exit after two checks of 2 s, long before DRAIN_DELAY");
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
    assertBetween(exit.at - signalledAt, 550, 6_000, "exit after DRAIN_DELAY + DRAIN_TIMEOUT");
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
  const reads = envoy.calls.filter((c) => c.at >= signalledAt && c.method === "GET").length;
  assert.equal(envoy.admin.requestCount - requestsBefore - reads, 2, "the failed attempt and its retry, nothing else");
  const fails = envoy.calls.filter((c) => c.target === "/healthcheck/fail");
  assert.deepEqual(fails.map((c) => `${c.method} ${c.status}`), ["POST 200"], "the retry landed");
  const lines = role.logs.filter(byStep("healthcheck-fail"));
  assert.deepEqual(lines.map((l) => l.level), ["warning", "info"]);
  assert.match(String(lines[0].envoyAnswer), /HTTP 500/);
  assert.ok(Number(lines[0].waitedSeconds) >= 0.3, "the first attempt comes after DRAIN_DELAY");
  assert.equal(envoy.state, "DRAINING");
  assert.equal(role.logs.find(byStep("exit"))?.envoyFailed, true);
  assertBetween(exit.at - signalledAt, 1_450, 6_000, "exit still at DRAIN_DELAY + DRAIN_TIMEOUT after the signal");
});

Deno.test("fixed mode: an Envoy that keeps failing the fail call is given up on at the call budget; exit on time", async () => {
  await using envoy = await startEnvoyEmulator();
  await using role = await started({ DRAIN_DELAY: "0.3", DRAIN_TIMEOUT: "1.2", ENVOY_ADMIN_URL: envoy.adminUrl });
  envoy.admin.faults.failNext(100_000, "server-error");
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 15_000);

  assert.equal(exit.code, 0);
  const failure = role.logs.find((l) => l.step === "healthcheck-fail" && l.level === "error");
  assert.ok(failure, "the fail call was given up on and logged as an error");
  assert.equal(role.logs.find(byStep("exit"))?.envoyFailed, false);
  assertBetween(exit.at - signalledAt, 1_450, 8_000, "exit at DRAIN_DELAY + DRAIN_TIMEOUT, not held by the retries");
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
  assertBetween(exit.at - signalledAt, 550, 6_000, "exit after DRAIN_DELAY + DRAIN_TIMEOUT");
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
  assertBetween(exit.at - signalledAt, 1_150, 6_000, "exit after SIGTERM");
  const failure = role.logs.find((l) => l.step === "healthcheck-fail" && l.level === "error");
  assert.ok(failure, "the failed fail call is logged as an error");
  assert.match(String(failure.envoyAnswer), /did not answer/);
  const firstAttempt = role.logs.find(byStep("healthcheck-fail"))!;
  assert.ok(Number(firstAttempt.waitedSeconds) >= 0.4, `first fail attempt at ${firstAttempt.waitedSeconds} s`);
  assert.equal(role.logs.find(byStep("exit"))?.envoyFailed, false);
});

Deno.test("connections mode: exits DRAIN_QUIET_PERIOD after the downstreams closed their last connections", async () => {
  await using envoy = await startEnvoyEmulator();
  await using role = await startedInConnectionsMode(envoy, { delay: 0.4, timeout: 20, quiet: 0.5 });
  const idle = await DownstreamConnection.open(envoy.ingressPort);
  const busy = await DownstreamConnection.open(envoy.ingressPort);
  const slowAnswer = busy.request("/slow?ms=1600");
  const signalledAt = Date.now();
  role.kill("SIGTERM");

  assert.deepEqual(await within(slowAnswer, "the slow answer", 8_000), { status: 200, connectionClose: true });
  await within(busy.ended, "the busy connection to close after its answer", 5_000);
  assert.equal(idle.isEnded, false, "Envoy never closes an idle keep-alive on a drain");
  // The downstream closes its pooled connection itself, as one does once the endpoint leaves service discovery.
  idle.close();
  const lastClosedAt = await idle.ended;
  const exit = await within(role.exited, "the helper to exit", 15_000);

  assert.equal(exit.code, 0);
  assertBetween(exit.at - lastClosedAt, 450, 8_000, "exit after the last connection closed");
  assert.ok(exit.at - signalledAt < 15_000, "far earlier than DRAIN_DELAY + DRAIN_TIMEOUT");
  assert.deepEqual(envoy.calls.filter((c) => c.method === "POST").map((c) => c.target), [
    "/healthcheck/fail",
    "/drain_listeners?graceful&inboundonly&skip_exit",
  ]);
  const counts = role.logs.filter(byStep("drain-connections")).map((l) => l.connectionsLeft);
  assert.equal(counts.at(-1), 0);
  assert.ok(counts.some((c) => typeof c === "number" && c > 0), `the open connections were seen: ${counts}`);
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
  assertBetween(exit.at - lastClosedAt, quietMs - 100, quietMs + 6_000, "exit after the last connection closed");
  const reads = role.logs.filter(byStep("drain-connections"));
  assert.ok(
    reads.some((l) => l.connectionsLeft === 0 && l.connectionsArriving === true),
    `reads saw no connection open while connections kept arriving: ${JSON.stringify(reads)}`,
  );
  assert.equal(role.logs.find(byStep("exit"))?.reason, "connections-drained");
});

Deno.test("idle keep-alives that downstreams never close: connections mode runs to DRAIN_TIMEOUT, fixed mode is unaffected", async () => {
  const run = async (mode: DrainMode) => {
    await using envoy = await startEnvoyEmulator({ drainTimeMs: 500 });
    await using role = await started({
      DRAIN_MODE: mode,
      DRAIN_DELAY: "0.3",
      DRAIN_TIMEOUT: "2",
      DRAIN_QUIET_PERIOD: "0.3",
      ENVOY_ADMIN_URL: envoy.adminUrl,
    });
    const idle = await Promise.all([1, 2].map(() => DownstreamConnection.open(envoy.ingressPort)));
    await idle[0].request("/");
    const signalledAt = Date.now();
    role.kill("SIGTERM");
    const exit = await within(role.exited, `the ${mode} helper to exit`, 15_000);
    assert.equal(exit.code, 0, mode);
    assert.deepEqual(idle.map((c) => c.isEnded), [false, false], `${mode}: nothing closes an idle keep-alive`);
    idle.forEach((c) => c.close());
    return { ms: exit.at - signalledAt, exitLine: role.logs.find(byStep("exit"))! };
  };
  const [fixed, connections] = await Promise.all([run("fixed"), run("connections")]);
  assertBetween(fixed.ms, 2_250, 8_000, "fixed: exit at DRAIN_DELAY + DRAIN_TIMEOUT");
  assert.equal(fixed.exitLine.reason, "drain-timeout");
  assertBetween(connections.ms, 2_250, 8_000, "connections: held to DRAIN_DELAY + DRAIN_TIMEOUT");
  assert.equal(connections.exitLine.reason, "drain-timeout");
  assert.equal(connections.exitLine.connectionsLeft, 2);
});

Deno.test("connections mode: an Envoy without /drain_listeners is logged, the exit line says so, the drain still ends", async () => {
  await using envoy = await startEnvoyEmulator({ drainListeners: false });
  await using role = await startedInConnectionsMode(envoy, { delay: 0.2, timeout: 20, quiet: 0.3 });
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 10_000);

  assert.equal(exit.code, 0);
  assert.ok(exit.at - signalledAt < 12_000, "the fail call landed, so the drain ends on quiet, not DRAIN_TIMEOUT");
  assert.deepEqual(envoy.calls.filter((c) => c.method === "POST").map((c) => `${c.target} ${c.status}`), [
    "/healthcheck/fail 200",
    "/drain_listeners?graceful&inboundonly&skip_exit 404",
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
  assertBetween(exit.at - signalledAt, 1_150, 6_000, "exit after SIGTERM");
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
  const [mode, pair, query, fragment] = await Promise.all([
    runRoleToEnd("appmesh-helper", { env: { DRAIN_MODE: "sometimes" } }),
    runRoleToEnd("appmesh-helper", { env: { HEALTHCHECK_PATH: "/health" } }),
    runRoleToEnd("appmesh-helper", { env: { ENVOY_ADMIN_URL: "http://127.0.0.1:9901/?format=json" } }),
    runRoleToEnd("appmesh-helper", { env: { ENVOY_ADMIN_URL: "http://127.0.0.1:9901#admin" } }),
  ]);
  for (const bad of [query, fragment]) {
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /configuration error: ENVOY_ADMIN_URL=".*": expected no query or fragment/);
  }
  assert.equal(mode.code, 2);
  assert.match(mode.stderr, /^ecs-appmesh-helper: configuration error: DRAIN_MODE="sometimes": expected one of/);
  assert.equal(mode.stdout, "");
  assert.equal(pair.code, 2);
  assert.match(pair.stderr, /PORT \(or --port\): is required when HEALTHCHECK_PATH is set/);
});

/** Opens a connection every `everyMs` and sends one request on it, until `stop()`; counts what was refused. */
function newConnectionsUntilStopped(port: number, everyMs: number) {
  const seen = { opened: 0, refused: 0, lastRefusedAt: 0 };
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      try {
        const connection = await DownstreamConnection.open(port);
        seen.opened++;
        await connection.request("/").catch(() => undefined);
        connection.close();
      } catch {
        seen.refused++;
        seen.lastRefusedAt = Date.now();
      }
      await sleep(everyMs);
    }
  })();
  return { seen, stop: () => (stopped = true, done) };
}

/** SIGTERMs the helper while a downstream opens a new connection every 100 ms, until the helper has exited. */
async function sigtermWhileDownstreamsConnect(envoy: EnvoyEmulator, role: RoleProcess) {
  const downstream = newConnectionsUntilStopped(envoy.ingressPort, 100);
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 15_000);
  await downstream.stop();
  return { exit, seen: downstream.seen, signalledAt };
}

Deno.test("App Mesh's Envoy (drain time shorter than DRAIN_TIMEOUT): warned at start, and it accepts new connections until the helper exits", async () => {
  // App Mesh's 20 s drain time against DRAIN_TIMEOUT 40, scaled down 20 times.
  await using envoy = await startEnvoyEmulator({ drainTimeMs: 1_000 });
  await using role = await startedInConnectionsMode(envoy, { delay: 0.2, timeout: 2, quiet: 0.3 });
  const warning = role.logs.find((l) => l.step === "envoy-check" && /drain time/.test(l.message));
  assert.ok(warning, "the short drain time is warned about once Envoy is LIVE, before any signal");
  assert.equal(warning.level, "warning");
  assert.equal(warning.drainTimeSeconds, 1);
  const { exit, seen, signalledAt } = await sigtermWhileDownstreamsConnect(envoy, role);

  assert.equal(exit.code, 0);
  assert.equal(seen.refused, 0, "no connection refused before the helper exited");
  assert.ok(seen.opened >= 5, `downstreams kept connecting: ${seen.opened}`);
  assert.ok(exit.at - signalledAt >= 2_150, "new connections keep the drain going to the deadline");
  assert.ok(envoy.calls.some((c) => c.target === "/drain_listeners?graceful&inboundonly&skip_exit"));
  assert.equal(envoy.accepting, true, "skip_exit: Envoy never stopped its listeners");
});

Deno.test("connections mode: an Envoy that stops its listener (no skip_exit before 1.29) is not taken as quiet", async () => {
  await using envoy = await startEnvoyEmulator({ drainTimeMs: 500, skipExit: false });
  await using role = await startedInConnectionsMode(envoy, { delay: 0.2, timeout: 3, quiet: 0.3 });
  const { exit, seen, signalledAt } = await sigtermWhileDownstreamsConnect(envoy, role);

  assert.equal(exit.code, 0);
  assert.ok(seen.refused > 0, "the stopped listener refused the downstreams");
  assert.ok(exit.at - signalledAt >= 3_150, `held to DRAIN_DELAY + DRAIN_TIMEOUT: ${exit.at - signalledAt} ms`);
  const hold = role.logs.find((l) => l.step === "drain-connections" && l.holdReason === "listener-stopped");
  assert.ok(hold, "the log says why the lull did not end the drain");
  assert.equal(hold.level, "warning");
  const exitLine = role.logs.find(byStep("exit"))!;
  assert.equal(exitLine.reason, "drain-timeout");
  assert.equal(exitLine.holdReason, "listener-stopped");
});

Deno.test("an Envoy restarted mid-drain (LIVE again, counters at zero) is noticed and failed again, in both modes", async () => {
  const run = async (mode: DrainMode) => {
    await using envoy = await startEnvoyEmulator();
    await using role = await started({
      DRAIN_MODE: mode,
      DRAIN_DELAY: "0.2",
      DRAIN_TIMEOUT: "4",
      DRAIN_QUIET_PERIOD: "3",
      ENVOY_ADMIN_URL: envoy.adminUrl,
    });
    role.kill("SIGTERM");
    await role.waitForLog((l) => l.step === "healthcheck-fail" && l.level === "info", 10_000);
    await envoy.restart();
    assert.equal(envoy.state, "LIVE");
    const noticed = await role.waitForLog(byStep("envoy-restarted"), 10_000);
    assert.equal(noticed.level, "warning");
    await until(() => envoy.state === "DRAINING", `the ${mode} helper to fail the restarted Envoy`, 5_000);
    const exit = await within(role.exited, `the ${mode} helper to exit`, 15_000);
    assert.equal(exit.code, 0);
    const posts = envoy.calls.filter((c) => c.method === "POST").map((c) => c.target.replace(/\?.*/, ""));
    const drains = mode === "connections" ? ["/drain_listeners"] : [];
    assert.deepEqual(posts, [...["/healthcheck/fail", ...drains], ...["/healthcheck/fail", ...drains]], mode);
    assert.equal(role.logs.find(byStep("exit"))?.envoyRestarts, 1);
  };
  await Promise.all([run("fixed"), run("connections")]);
});

Deno.test("an admin address that answers with HTML or 404 is not Envoy taking the call", async () => {
  await using html = await startSimServer({ handle: () => ({ status: 200, body: "<!DOCTYPE html><html></html>\n" }) });
  await using missing = await startSimServer({ handle: () => ({ status: 404, body: "invalid path. admin commands" }) });
  const run = async (adminUrl: string, answer: RegExp) => {
    await using role = helper({ DRAIN_DELAY: "0.2", DRAIN_TIMEOUT: "0.5", ENVOY_ADMIN_URL: adminUrl });
    await role.waitForLog(byStep("envoy-startup"));
    role.kill("SIGTERM");
    const exit = await within(role.exited, "the helper to exit", 15_000);
    assert.equal(exit.code, 0);
    const failure = role.logs.find((l) => l.step === "healthcheck-fail" && l.level === "error");
    assert.ok(failure, `the call is logged as not taken (${adminUrl})`);
    assert.match(String(failure.envoyAnswer), answer);
    assert.equal(role.logs.find(byStep("exit"))?.envoyFailed, false);
  };
  await Promise.all([run(html.url, /HTTP 200: <!DOCTYPE html>/), run(`${missing.url}/admin`, /HTTP 404/)]);
});

Deno.test("Envoy's admin on a unix socket (App Mesh ENVOY_ADMIN_MODE=uds): startup, drain and the health subcommand", async () => {
  const dir = await Deno.makeTempDir({ prefix: "appmesh-helper-uds-" });
  try {
    await using envoy = await startEnvoyEmulator({ adminSocketPath: `${dir}/envoy_admin.sock` });
    const env = { ENVOY_ADMIN_URL: envoy.adminUrl };
    const healthy = await runRoleToEnd("appmesh-helper", { args: ["health"], env });
    assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
    await using role = await startedInConnectionsMode(envoy, { delay: 0.2, timeout: 1, quiet: 0.2 });
    assert.equal(role.logs.find(byStep("envoy-startup"))?.envoyAnswer, "LIVE");
    role.kill("SIGTERM");
    const exit = await within(role.exited, "the helper to exit", 15_000);
    assert.equal(exit.code, 0);
    assert.deepEqual(envoy.calls.filter((c) => c.method === "POST").map((c) => `${c.target} ${c.status}`), [
      "/healthcheck/fail 200",
      "/drain_listeners?graceful&inboundonly&skip_exit 200",
    ]);
    assert.equal(role.logs.find(byStep("exit"))?.reason, "connections-drained");
    const unhealthy = await runRoleToEnd("appmesh-helper", { args: ["health"], env });
    assert.equal(unhealthy.code, 1, "Envoy is DRAINING now");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connections mode: an ENVOY_INGRESS_LISTENER that matches no listener is warned about once Envoy is LIVE", async () => {
  await using envoy = await startEnvoyEmulator();
  await using role = await started({
    DRAIN_MODE: "connections",
    ENVOY_INGRESS_LISTENER: "8080",
    ENVOY_ADMIN_URL: envoy.adminUrl,
  });
  const warning = role.logs.find((l) => l.step === "envoy-check" && /ENVOY_INGRESS_LISTENER/.test(l.message));
  assert.ok(warning, "warned at start, not only at shutdown");
  assert.equal(warning.level, "warning");
  assert.deepEqual(warning.envoyListeners, ["0.0.0.0_15000", "0.0.0.0_15001"]);
  assert.match(warning.message, /0\.0\.0\.0_15000, 0\.0\.0\.0_15001/);
  assert.ok(
    role.logs.indexOf(warning) < role.logs.findIndex(byStep("startup-complete")),
    "the warning comes before the startup stage ends",
  );
});
