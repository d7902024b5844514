/**
 * The shutdown stage driven in this process against the Envoy emulator, with `Date.now` stepped an hour
 * either way while it waits (the emulator's Envoy reads the same stepped clock for its uptime, as on a
 * host): its waits are on the monotonic clock, so the stage ends when DRAIN_DELAY + DRAIN_TIMEOUT is over.
 */
import assert from "node:assert/strict";
import { EnvoyAdmin, ingressListener } from "../../lib/appmesh_helper/envoy_admin.ts";
import { runShutdown } from "../../lib/appmesh_helper/shutdown.ts";
import { startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { steppableWallClock } from "../../sim/wall_clock.ts";
import { captureLog } from "../capture_log.ts";
import { within } from "./support.ts";

const HOUR_MS = 3_600_000;

for (const stepMs of [-HOUR_MS, HOUR_MS]) {
  Deno.test(`shutdown: the wall clock stepping an hour ${stepMs < 0 ? "back" : "forward"} mid-wait moves no deadline`, async () => {
    using wall = steppableWallClock();
    await using envoy = await startEnvoyEmulator();
    const { log, lines } = captureLog("appmesh-helper");
    const started = performance.now();
    const stage = runShutdown({
      log,
      envoy: new EnvoyAdmin(envoy.adminUrl),
      listener: ingressListener("15000"),
      appUrl: undefined,
      appTimeoutMs: 1_000,
      signalName: "SIGTERM",
      plan: {
        drainDelayMs: 400,
        drainTimeoutMs: 800,
        mode: "fixed",
        quietPeriodMs: 0,
        pollIntervalMs: 100,
        appCheck: false,
      },
    });
    // Once during DRAIN_DELAY, once during DRAIN_TIMEOUT.
    setTimeout(() => wall.step(stepMs), 200);
    setTimeout(() => wall.step(stepMs), 800);
    const reason = await within(stage, "the shutdown stage to end", 10_000).catch((error) => {
      throw new Error(`${error.message}; it logged ${JSON.stringify(lines.filter((l) => l.step))}`);
    });
    const tookMs = performance.now() - started;
    assert.equal(reason, "drain-timeout");
    assert.ok(
      tookMs >= 1_150 && tookMs < 6_000,
      `the stage ended after ${tookMs} ms, DRAIN_DELAY + DRAIN_TIMEOUT is 1.2 s`,
    );
    const exit = lines.find((l) => l.step === "exit")!;
    assert.equal(exit.envoyRestarts, 0, "Envoy's uptime moved with the clock: no restart");
    assert.ok(Number(exit.waitedSeconds) >= 1.15 && Number(exit.waitedSeconds) < 6, `waited ${exit.waitedSeconds} s`);
  });
}
