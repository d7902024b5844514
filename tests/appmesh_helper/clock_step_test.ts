/**
 * The helper as its own process with its wall clock stepped an hour either way (libfaketime, monotonic
 * clock untouched) in the middle of each timed phase: the startup wait, DRAIN_DELAY and DRAIN_TIMEOUT.
 * The Envoy emulator reads the same stepped clock, as a real Envoy on the host does for its uptime. Times
 * are measured in the test on `performance.now()`; the bounds allow a loaded machine seconds of lateness,
 * which an hour's step would overshoot by far, and allow no earliness at all.
 */
import assert from "node:assert/strict";
import { startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { type LogEntry, spawnRole } from "../../sim/role_process.ts";
import { fakedWallClock, libfaketimeForTests } from "../../sim/wall_clock.ts";
import { within } from "./support.ts";

const library = libfaketimeForTests();
const HOUR_SECONDS = 3_600;
const DRAIN_DELAY_SECONDS = 1;
const DRAIN_TIMEOUT_SECONDS = 2;
/** Lateness a loaded 2-core machine may add to any wait here. */
const SLACK_SECONDS = 6;

const byStep = (step: string) => (entry: LogEntry) => entry.step === step;

function assertSeconds(actual: number, low: number, high: number, what: string): void {
  assert.ok(actual >= low && actual <= high, `${what}: ${actual} s, expected ${low}..${high} s`);
}

for (const phase of ["drain-delay", "drain-timeout"] as const) {
  for (const stepSeconds of [-HOUR_SECONDS, HOUR_SECONDS]) {
    const direction = stepSeconds < 0 ? "back" : "forward";
    Deno.test({
      name: `clock step: the wall clock stepping an hour ${direction} during ${
        phase === "drain-delay" ? "DRAIN_DELAY" : "DRAIN_TIMEOUT"
      } moves neither the fail call nor the exit`,
      ignore: library === undefined,
      async fn() {
        await using clock = await fakedWallClock(library!);
        await using envoy = await startEnvoyEmulator({ wallClock: clock.now });
        await using role = spawnRole("appmesh-helper", {
          env: {
            ...clock.env,
            DRAIN_DELAY: String(DRAIN_DELAY_SECONDS),
            DRAIN_TIMEOUT: String(DRAIN_TIMEOUT_SECONDS),
            ENVOY_ADMIN_URL: envoy.adminUrl,
          },
        });
        await role.waitForLog(byStep("startup-complete"));
        const signalledAt = performance.now();
        const signalledAtWall = Date.now();
        role.kill("SIGTERM");
        await role.waitForLog(byStep(phase));
        await clock.step(stepSeconds);
        const total = DRAIN_DELAY_SECONDS + DRAIN_TIMEOUT_SECONDS;
        const exit = await within(role.exited, "the helper to exit", (total + SLACK_SECONDS) * 1000).catch((error) => {
          const waits = role.logs.filter((l) => l.step === "drain-delay" || l.step === "drain-timeout");
          throw new Error(`${error.message}; it logged: ${JSON.stringify(waits)}`);
        });
        const exitedAfter = (performance.now() - signalledAt) / 1000;

        assert.equal(exit.code, 0);
        const fail = envoy.calls.find((c) => c.target === "/healthcheck/fail");
        assert.ok(fail, "Envoy was told to fail its health check");
        // The emulator stamps calls with this (unstepped) process's wall clock.
        assertSeconds(
          (fail.at - signalledAtWall) / 1000,
          DRAIN_DELAY_SECONDS - 0.05,
          DRAIN_DELAY_SECONDS + SLACK_SECONDS,
          "fail call after SIGTERM",
        );
        assertSeconds(exitedAfter, total - 0.05, total + SLACK_SECONDS, "exit after SIGTERM");
        const timeoutWait = role.logs.find(byStep("drain-timeout"))!;
        assert.ok(
          Number(timeoutWait.forSeconds) <= DRAIN_TIMEOUT_SECONDS,
          `waiting DRAIN_TIMEOUT for ${timeoutWait.forSeconds} s`,
        );
        const exitLine = role.logs.find(byStep("exit"))!;
        assert.equal(exitLine.reason, "drain-timeout");
        assertSeconds(Number(exitLine.waitedSeconds), total - 0.05, exitedAfter, "waitedSeconds in the exit line");
        for (const line of role.logs.filter((l) => typeof l.waitedSeconds === "number")) {
          assert.ok(Number(line.waitedSeconds) >= 0, `negative waitedSeconds: ${JSON.stringify(line)}`);
        }
        // Envoy's uptime went back (or below zero) with the step: that is no restart, and its stats stay readable.
        assert.equal(exitLine.envoyRestarts, 0, JSON.stringify(role.logs.filter((l) => l.step === "envoy-restarted")));
        assert.ok(!role.logs.some(byStep("envoy-watch")), JSON.stringify(role.logs.filter(byStep("envoy-watch"))));
      },
    });
  }
}

for (const stepSeconds of [-HOUR_SECONDS, HOUR_SECONDS]) {
  Deno.test({
    name: `clock step: the wall clock stepping an hour ${
      stepSeconds < 0 ? "back" : "forward"
    } during the startup wait changes neither the polling nor the waited time logged`,
    ignore: library === undefined,
    async fn() {
      await using clock = await fakedWallClock(library!);
      await using envoy = await startEnvoyEmulator({ wallClock: clock.now, init: "INITIALIZING" });
      const spawnedAt = performance.now();
      await using role = spawnRole("appmesh-helper", { env: { ...clock.env, ENVOY_ADMIN_URL: envoy.adminUrl } });
      await role.waitForLog(byStep("envoy-startup"));
      await clock.step(stepSeconds);
      // Two polls after the step, at one a second.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const liveFrom = performance.now();
      envoy.init = "INITIALIZED";
      const live = await role.waitForLog((l) => l.step === "envoy-startup" && l.message === "Envoy is live", 10_000);
      const seenAfter = (performance.now() - liveFrom) / 1000;
      const complete = await role.waitForLog(byStep("startup-complete"));
      const sinceSpawn = (performance.now() - spawnedAt) / 1000;

      assert.ok(seenAfter <= 1 + SLACK_SECONDS, `Envoy seen live ${seenAfter} s after it was, at a 1 s poll`);
      // waitedSeconds counts from the startup stage's beginning, a little after the spawn.
      assertSeconds(Number(live.waitedSeconds), 2, sinceSpawn, "waitedSeconds when Envoy is live");
      assertSeconds(Number(complete.waitedSeconds), Number(live.waitedSeconds), sinceSpawn, "waitedSeconds at the end");
    },
  });
}
