/**
 * The helper as its own process, with its binary's permissions, against the Envoy emulator: real
 * signals, real waits (fractions of a second), real connections. Timing bounds are generous; what
 * they check is the order of events and which wait decided the exit.
 */
import assert from "node:assert/strict";
import { DownstreamConnection, unusedPort } from "../../sim/downstream.ts";
import { type EnvoyEmulator, startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { startSimServer } from "../../sim/http_server.ts";
import { type LogEntry, type RoleProcess, runRoleToEnd, spawnRole } from "../support/role_process.ts";
import { within } from "./support.ts";

const byStep = (step: string) => (entry: LogEntry) => entry.step === step;

function helper(env: Record<string, string>) {
  return spawnRole("appmesh-helper", { env });
}

/** A helper in connections mode whose startup stage is over (Envoy live, no app check). */
async function startedInConnectionsMode(
  envoy: EnvoyEmulator,
  seconds: { delay: number; timeout: number; quiet: number },
): Promise<RoleProcess> {
  const role = helper({
    DRAIN_MODE: "connections",
    DRAIN_DELAY: String(seconds.delay),
    DRAIN_TIMEOUT: String(seconds.timeout),
    DRAIN_QUIET_PERIOD: String(seconds.quiet),
    ENVOY_ADMIN_URL: envoy.adminUrl,
  });
  try {
    await role.waitForLog(byStep("startup-complete"));
  } catch (error) {
    await role[Symbol.asyncDispose]();
    throw error;
  }
  return role;
}

/** A stand-in app whose health check answers `status.value` (change it at any time). */
async function startApp(initial: number) {
  const status = { value: initial };
  const server = await startSimServer({ handle: () => ({ status: status.value, body: "app\n" }) });
  return Object.assign(server, { status });
}

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

Deno.test("app configured but gone: exit 0 at once, Envoy is never told", async () => {
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
  assert.match(String(role.logs.find(byStep("app-check"))?.appAnswer), /^no answer/);
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
