/**
 * The actuator against a real private Docker engine, in-process: one tick is observe, plan, act, as the
 * daemon does it. A container that vanishes between the observation and its step is skipped; a failed
 * call ends the run before the agent is unpaused, and the next tick converges.
 * @module
 */
import assert from "node:assert/strict";
import { setupLogging } from "../../lib/log.ts";
import { type DockerActions, runSteps } from "../../lib/network_sentry/actuator.ts";
import { DockerApiError, DockerHost } from "../../lib/network_sentry/docker.ts";
import { parseDockerHost } from "../../lib/network_sentry/docker_address.ts";
import { fileJournal, type JournalStore } from "../../lib/network_sentry/journal.ts";
import {
  type Observation,
  SentryMachine,
  type SentryMachineSettings,
  type Verdict,
} from "../../lib/network_sentry/machine.ts";
import { engineForTests } from "../../sim/docker_engine.ts";
import type { LogEntry } from "../../sim/role_process.ts";
import { standardHost, waitUntil } from "./harness.ts";

const engine = await engineForTests();
const options = { ignore: engine === undefined, sanitizeOps: false, sanitizeResources: false };
const dir = await Deno.makeTempDir({ prefix: "sentry-actuator-" });
Deno.test.afterAll(async () => {
  await engine?.close();
  await Deno.remove(dir, { recursive: true });
});

const logs: LogEntry[] = [];
const log = setupLogging({
  role: "network-sentry",
  level: "debug",
  format: "json",
  write: (line) => logs.push(JSON.parse(line)),
});

const CLEANUP: SentryMachineSettings = {
  strategy: "cleanup",
  retries: 0,
  cutoverTimeoutMs: 300_000,
  replacementSettleMs: 10_000,
};

/** One reconcile, as runSentry does it. */
async function tick(host: DockerHost, docker: DockerActions, store: JournalStore, verdict: Verdict) {
  const journal = await store.load();
  const observation = await host.observe("ecs-agent");
  const steps = new SentryMachine(CLEANUP).step({ wallMs: Date.now() }, { journal, verdict, observation });
  return await runSteps(steps, journal, { docker, journal: store, log, dryRun: false });
}

function idOf(observation: Observation, name: string): string {
  return observation.containers.find((c) => c.name === name)!.id;
}

Deno.test({
  ...options,
  name: "a container removed between the observation and its step is skipped; the step and the run go on",
  async fn() {
    await standardHost(engine!, 30);
    const host = new DockerHost(parseDockerHost(engine!.host));
    const store = fileJournal(`${dir}/vanish/state.json`);
    const observation = await host.observe("ecs-agent");
    const steps = new SentryMachine(CLEANUP).step({ wallMs: Date.now() }, {
      journal: await store.load(),
      verdict: "down",
      observation,
    });
    await host.stopAndRemove(idOf(observation, "web"));
    logs.length = 0;
    const outcome = await runSteps(steps, await store.load(), { docker: host, journal: store, log, dryRun: false });
    assert.deepEqual([outcome.finished, outcome.failedCalls], [true, 0]);
    assert.ok(
      logs.some((e) =>
        e.message.startsWith("[ecs-offline] container vanished, skipped: set container restart policy") &&
        e.container === "web"
      ),
      JSON.stringify(logs),
    );
    assert.equal((await engine!.state("crasher"))?.policy, "on-failure", "the rest of the step ran");
    assert.equal((await engine!.state("ecs-agent"))?.status, "paused");
    const next = await tick(host, host, store, "down");
    assert.equal(next.finished, true);
    assert.deepEqual((await store.load()).containers.map((c) => c.name), ["crasher"], "web left the journal");
  },
});

Deno.test({
  ...options,
  name: "a failed Docker call ends the run before the agent is unpaused; the next tick converges",
  async fn() {
    await standardHost(engine!, 30);
    const host = new DockerHost(parseDockerHost(engine!.host));
    const store = fileJournal(`${dir}/failure/state.json`);
    assert.equal((await tick(host, host, store, "down")).finished, true);
    await engine!.crash("web");
    await waitUntil("Docker restarted web", async () => ((await engine!.state("web"))?.restartCount ?? 0) >= 1);
    const failingRemoval: DockerActions = {
      pause: (id) => host.pause(id),
      unpause: (id) => host.unpause(id),
      setRestartPolicy: (id, policy) => host.setRestartPolicy(id, policy),
      stopAndRemove: () => Promise.reject(new DockerApiError(500, "POST /containers/web/stop", "daemon busy")),
    };
    logs.length = 0;
    const failed = await tick(host, failingRemoval, store, "up");
    assert.deepEqual([failed.finished, failed.failedCalls], [false, 1]);
    assert.ok(logs.some((e) => e.message.startsWith("[ecs-online] docker error, retried on the next probe")));
    assert.equal(logs.some((e) => e.step === "unpause the ECS agent"), false, "the unpause step never began");
    assert.equal((await engine!.state("ecs-agent"))?.status, "paused");
    assert.equal((await store.load()).mode, "handing-back");

    const next = await tick(host, host, store, "up");
    assert.equal(next.finished, true);
    assert.equal(await engine!.state("web"), undefined, "removed on the next tick");
    assert.equal((await engine!.state("crasher"))?.policy, "no");
    assert.equal((await engine!.state("ecs-agent"))?.status, "running");
    assert.equal((await store.load()).mode, "online");
  },
});
