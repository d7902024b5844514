/**
 * The sentry's loop driven in this process, with `Date.now` stepped an hour either way while a probe runs:
 * the pause after that tick, and so the next probe, stay on the monotonic clock.
 */
import assert from "node:assert/strict";
import { dryRunJournal } from "../../lib/network_sentry/journal.ts";
import { runSentry } from "../../lib/network_sentry/sentry.ts";
import { steppableWallClock } from "../../sim/wall_clock.ts";
import { waitUntil } from "../../sim/wait.ts";
import { captureLog } from "../capture_log.ts";

const INTERVAL_MS = 1_000;
const HOUR_MS = 3_600_000;

const refused = () => Promise.reject(new Error("a dry run changes nothing"));

for (const stepMs of [-HOUR_MS, HOUR_MS]) {
  Deno.test(`loop: the wall clock stepping an hour ${stepMs < 0 ? "back" : "forward"} mid-probe keeps the pause`, async () => {
    using wall = steppableWallClock();
    const dir = await Deno.makeTempDir({ prefix: "sentry-loop-" });
    const { log, lines } = captureLog("network-sentry");
    const stop = new AbortController();
    try {
      const running = runSentry({
        options: {
          intervalMs: INTERVAL_MS,
          probeTimeoutMs: 500,
          thresholds: { failureThreshold: 2, recoveryThreshold: 2 },
          machine: { strategy: "cleanup", retries: 0, cutoverTimeoutMs: 300_000, replacementSettleMs: 10_000 },
          agentContainer: "ecs-agent",
          dryRun: true,
          once: false,
        },
        log,
        signal: stop.signal,
        region: "eu-test-1",
        endpoint: "https://ecs.eu-test-1.amazonaws.com",
        probe: async () => {
          wall.step(stepMs);
          await new Promise((resolve) => setTimeout(resolve, 50));
          return { ok: true, status: 400, awsError: "MissingAuthenticationTokenException", latencyMs: 50 };
        },
        docker: {
          observe: () => Promise.resolve({ containers: [] }),
          pause: refused,
          unpause: refused,
          setRestartPolicy: refused,
          stopAndRemove: refused,
        },
        journal: dryRunJournal(`${dir}/state.json`),
        resumeCommand: "ecs-network-sentry resume",
      });
      const pauses = () => lines.filter((l) => String(l.message).startsWith("[end] sleeping for"));
      await waitUntil("the first pause", () => pauses().length > 0, 10_000);
      // Stopped at once: a pause an hour long would otherwise hold the test for that hour.
      stop.abort("SIGTERM");
      assert.equal(await running, 0);
      const seconds = Number(pauses()[0].seconds);
      assert.ok(seconds > 0.5 && seconds <= INTERVAL_MS / 1000, `the tick logged a ${seconds} s pause`);
    } finally {
      stop.abort();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
