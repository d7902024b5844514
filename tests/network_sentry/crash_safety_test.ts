/**
 * Crash safety on the real engine: the sentry is SIGKILLed as it logs each step of either transition
 * and started again; and dockerd itself is restarted mid-outage. Each case must converge: nothing left
 * on on-failure, the agent running, no container removed that Docker did not restart.
 * @module
 */
import assert from "node:assert/strict";
import { WRITE_JOURNAL } from "../../lib/network_sentry/machine.ts";
import type { LogEntry } from "../../sim/role_process.ts";
import {
  type Fixture,
  fixtureForFile,
  handedBack,
  offlineApplied,
  SentryCase,
  standardHost,
  stopped,
  waitUntil,
} from "./harness.ts";

const { fixture, options } = await fixtureForFile();

/** Each step of both transitions (cleanup), as [log tag, step title, which occurrence of that title]. */
type KillPoint = readonly ["ecs-offline" | "ecs-online", string, number];
const KILL_POINTS: readonly KillPoint[] = [
  ["ecs-offline", WRITE_JOURNAL, 1],
  ["ecs-offline", "hold the ECS agent paused", 1],
  ["ecs-offline", WRITE_JOURNAL, 2],
  ["ecs-offline", "keep ECS containers alive with an on-failure restart policy", 1],
  ["ecs-online", WRITE_JOURNAL, 1],
  ["ecs-online", "restore the recorded restart policies", 1],
  ["ecs-online", "stop and remove containers Docker restarted during the outage", 1],
  ["ecs-online", "unpause the ECS agent", 1],
  ["ecs-online", "hand-back complete: clear the journal", 1],
];

async function assertConverged(f: Fixture, c: SentryCase, where: string): Promise<void> {
  const states = await f.engine.states();
  for (const [name, state] of states) {
    assert.notEqual(state.policy, "on-failure", `${where}: ${name} left on on-failure`);
  }
  assert.equal(states.get("ecs-agent")?.status, "running", `${where}: agent left ${states.get("ecs-agent")?.status}`);
  assert.equal(states.has("crasher"), false, `${where}: the restarted container is still there`);
  assert.equal(states.get("web")?.status, "running", `${where}: a container that never restarted was removed`);
  assert.equal(states.get("not-ecs")?.status, "running", `${where}: the unlabelled container was touched`);
  assert.equal((await c.journal())?.mode, "online", where);
}

/** Matches the `nth` announcement of a step under a log tag. */
function stepAnnounced([tag, title, nth]: KillPoint): (e: LogEntry) => boolean {
  let seen = 0;
  return (e) => e.message.startsWith(`[${tag}] step:`) && e.step === title && ++seen === nth;
}

for (const point of KILL_POINTS) {
  const [tag, title, nth] = point;
  const where = `${tag} "${title}"${nth > 1 ? ` (${nth})` : ""}`;
  Deno.test({
    ...options,
    name: `SIGKILL at ${where}, then a restart converges`,
    async fn() {
      const f = fixture!;
      const c = new SentryCase(f, where.replace(/\W+/g, "-"));
      await f.endpoint.set("answer");
      await standardHost(f.engine, 3);
      const first = c.start();
      await first.waitForLog((e) => e.message.startsWith("[startup] probing"));
      await f.endpoint.set("refuse");
      let survivor = first;
      if (tag === "ecs-offline") {
        await first.waitForLog(stepAnnounced(point));
        await stopped(first, "SIGKILL");
        survivor = c.start();
      }
      await waitUntil("offline", () => offlineApplied(f.engine));
      await waitUntil(
        "Docker restarted the crashing container",
        async () => (await f.engine.state("crasher"))!.restartCount >= 1,
      );
      await f.endpoint.set("answer");
      if (tag === "ecs-online") {
        await first.waitForLog(stepAnnounced(point));
        await stopped(first, "SIGKILL");
        survivor = c.start();
      }
      await waitUntil("the journal is cleared", async () => (await c.journal())?.mode === "online");
      await assertConverged(f, c, where);
      // The journal may have been cleared before the kill: a SIGTERM before the survivor handles signals would end it
      // with the signal's default action (exit 143), not with its shutdown.
      await survivor.waitForLog((e) => e.message.startsWith("[startup] probing"));
      assert.equal(await stopped(survivor), 0);
    },
  });
}

Deno.test({
  ...options,
  name: "dockerd restarted mid-outage: errors are logged and retried, the agent is re-paused, hand-back is clean",
  async fn() {
    const f = fixture!;
    const c = new SentryCase(f, "dockerd-restart");
    await f.endpoint.set("answer");
    await standardHost(f.engine, 30);
    await using sentry = c.start();
    await sentry.waitForLog((e) => e.message.startsWith("[startup] probing"));
    await f.endpoint.set("refuse");
    await waitUntil("offline", () => offlineApplied(f.engine));
    await f.engine.stopDaemon();
    await sentry.waitForLog((e) => e.message.startsWith("[docker] cannot read containers"));
    await f.engine.startDaemon();
    await waitUntil("the agent, restarted with the daemon, is paused again", async () => {
      const states = await f.engine.states();
      return states.get("ecs-agent")?.status === "paused" && states.get("web")?.status === "running";
    });
    await f.endpoint.set("answer");
    await sentry.waitForLog(handedBack);
    const states = await f.engine.states();
    assert.equal(states.get("ecs-agent")?.status, "running");
    assert.equal(states.has("web"), false, "restarted by the daemon: removed under cleanup");
    assert.equal(states.has("crasher"), false);
    assert.equal(states.get("not-ecs")?.policy, "no", "the unlabelled container keeps its policy");
    assert.match(await Deno.readTextFile(c.metricsFile), /^ecs_network_sentry_docker_errors_total [1-9]\d*$/m);
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name:
    "agent paused by someone else, host restarted mid-outage: the sentry pauses it again and unpauses it once online",
  async fn() {
    const f = fixture!;
    const c = new SentryCase(f, "paused-before-reboot");
    await f.endpoint.set("answer");
    await standardHost(f.engine, 30);
    await f.engine.pause("ecs-agent");
    await using sentry = c.start(["--restart-strategy", "preserve"]);
    await sentry.waitForLog((e) => e.message.startsWith("[startup] probing"));
    await f.endpoint.set("refuse");
    await waitUntil("offline", () => offlineApplied(f.engine));
    assert.equal((await c.journal())?.agentPausedBefore, true);
    // A daemon restart stands in for the reboot: the agent (restart policy always) comes back running.
    await f.engine.restartDaemon();
    await waitUntil("the sentry paused the agent itself", async () => {
      const journal = await c.journal();
      return (await f.engine.state("ecs-agent"))?.status === "paused" && journal?.agentPausedBefore === false;
    });
    await f.endpoint.set("answer");
    await sentry.waitForLog(handedBack);
    assert.equal((await f.engine.state("ecs-agent"))?.status, "running", "not left paused for good");
    assert.equal((await c.journal())?.mode, "online");
    assert.equal(await stopped(sentry), 0);
  },
});
