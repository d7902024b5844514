/**
 * network-sentry demo: an ECS Anywhere host loses its region. The sentry notices within
 * failure-threshold x interval + timeout, pauses the ECS agent and puts the task containers on an
 * on-failure restart policy, so a container that crashes is restarted by Docker. When the region answers
 * again it hands back: the kept containers' policies are restored first (so none can be restarted by
 * Docker while the rest is cleaned up), the restarted container is removed (ECS re-launches its task),
 * and the agent is unpaused last. On a private real Docker engine when one can be started;
 * otherwise against a read-only Docker API emulator with --dry-run.
 * @module
 */
import type { Narrator, Scenario, ScenarioOutcome } from "./scenario.ts";
import { type DockerEngine, dockerUnavailableReason, startDockerEngine } from "../sim/docker_engine.ts";
import { type DockerApiEmulator, ecsLabels, runningContainer, startDockerApiEmulator } from "../sim/docker_api.ts";
import { createTestCa, startRegionEndpoint } from "../sim/region_endpoint.ts";
import { type LogEntry, type RoleProcess, spawnRole } from "../sim/role_process.ts";
import { waitUntil } from "../sim/wait.ts";

const INTERVAL_S = 0.5;
const TIMEOUT_S = 0.5;
const THRESHOLD = 2;

/** The host the story happens on: a real engine, or the emulator for a dry run. */
interface Host {
  readonly dockerHost: string;
  readonly dryRun: boolean;
  describe(): Promise<string>;
  crashWorker(): Promise<void>;
  workerRestarts(): Promise<number>;
  agentState(): Promise<string | undefined>;
  close(): Promise<void>;
}

async function realHost(engine: DockerEngine): Promise<Host> {
  await engine.createAgent();
  await engine.createTask({ name: "web", family: "shop-web", containerName: "web", behaviour: "healthy" });
  await engine.createTask({ name: "worker", family: "shop-worker", containerName: "worker", behaviour: "healthy" });
  await engine.createUnlabelled("node-exporter");
  return {
    dockerHost: engine.host,
    dryRun: false,
    async describe() {
      const states = [...(await engine.states()).values()].sort((a, b) => a.name.localeCompare(b.name));
      return states.map((s) => `${s.name} ${s.status}, restart policy ${s.policy}`).join("; ");
    },
    crashWorker: () => engine.crash("worker"),
    workerRestarts: async () => (await engine.state("worker"))?.restartCount ?? 0,
    agentState: async () => (await engine.state("ecs-agent"))?.status,
    close: () => engine.close(),
  };
}

async function emulatedHost(): Promise<Host> {
  const started = new Date(Date.now() - 3_600_000).toISOString();
  const container = (id: string, name: string, labels: Record<string, string>) =>
    runningContainer(id, name, labels, started);
  const api: DockerApiEmulator = await startDockerApiEmulator([
    container("a9e1", "ecs-agent", {}),
    container("b7c2", "web", ecsLabels("demo", "shop-web", "web")),
    container("c3d4", "worker", ecsLabels("demo", "shop-worker", "worker")),
    container("d5f6", "node-exporter", {}),
  ]);
  const worker = api.containers.find((c) => c.name === "worker")!;
  return {
    dockerHost: api.host,
    dryRun: true,
    describe: () => Promise.resolve(api.containers.map((c) => `${c.name} ${c.status}`).join("; ")),
    crashWorker() {
      // What Docker would report had the on-failure policy really been set.
      worker.restartCount = 1;
      worker.startedAt = new Date().toISOString();
      return Promise.resolve();
    },
    workerRestarts: () => Promise.resolve(worker.restartCount),
    agentState: () => Promise.resolve("running"),
    close: () => api.close(),
  };
}

/** The sentry's Docker actions (or, in a dry run, what it would do) logged since entry `from`, each once. */
function actions(sentry: RoleProcess, phase: string, from: number): LogEntry[] {
  const seen = new Set<string>();
  return sentry.logs.slice(from).filter((e) => {
    if (!e.message.startsWith(`[${phase}]`) || e.message.includes("step:") || e.container === undefined) return false;
    const key = describeAction(e);
    return !seen.has(key) && seen.add(key) !== undefined;
  });
}

function describeAction(e: LogEntry): string {
  return `${e.message.replace(/^\[[\w-]+\] /, "").replace("{policy}", JSON.stringify(e.policy))} (${e.container})`;
}

async function run(say: Narrator["say"]): Promise<ScenarioOutcome> {
  const reason = await dockerUnavailableReason();
  const dir = await Deno.makeTempDir({ prefix: "sentry-demo-" });
  const host = reason ? await emulatedHost() : await realHost(await startDockerEngine());
  const ca = await createTestCa(dir);
  await using region = startRegionEndpoint(ca);
  try {
    say(
      reason
        ? `no real Docker engine here (${reason}): the sentry runs with --dry-run against a read-only Docker API ` +
          "emulator and only says what it would do"
        : "a private Docker engine was started for this demo (its own socket and data root under /tmp)",
    );
    say(`host: ${await host.describe()}`);
    await using sentry = spawnRole("network-sentry", {
      args: [
        "--region=eu-test-1",
        `--endpoint=${region.url}`,
        `--ca-file=${ca.caFile}`,
        `--interval=${INTERVAL_S}`,
        `--timeout=${TIMEOUT_S}`,
        `--failure-threshold=${THRESHOLD}`,
        `--docker-host=${host.dockerHost}`,
        `--state-file=${dir}/state.json`,
        `--logfile=${dir}/sentry.log`,
        ...(host.dryRun ? ["--dry-run"] : []),
      ],
    });
    await sentry.waitForLog((e) => e.message.startsWith("[startup] probing"));
    say(
      `sentry started: probes the region every ${INTERVAL_S} s (timeout ${TIMEOUT_S} s); offline after ${THRESHOLD} ` +
        "failed probes in a row",
    );
    await new Promise((r) => setTimeout(r, 1000));

    const cut = Date.now();
    await region.set("blackhole");
    say("the region becomes unreachable: connections are accepted and never answered (a blackhole)");
    const failure = await sentry.waitForLog((e) => e.message.startsWith("[connect]") && e.level === "warning");
    say(`sentry: probe failed (${failure.reason}: ${failure.detail})`);
    const offlineAt = sentry.logs.length;
    const detected = await sentry.waitForLog((e) => e.message.startsWith("[ecs-offline] ecs unreachable"));
    const detectionS = (Date.parse(detected.time) - cut) / 1000;
    say(`sentry: "${detected.message}" ${detectionS.toFixed(1)} s after the outage began`);
    await waitUntil(
      "the offline actions are done",
      () => Promise.resolve(actions(sentry, "ecs-offline", offlineAt).length >= 3),
    );
    for (const e of actions(sentry, "ecs-offline", offlineAt)) say(`sentry: ${describeAction(e)}`);
    const agentDuringOutage = await host.agentState();
    say(`host: ${await host.describe()}`);

    await host.crashWorker();
    say("the worker crashes (exits non-zero) while the region is away");
    await waitUntil("Docker restarted the worker", async () => (await host.workerRestarts()) >= 1);
    say(
      host.dryRun
        ? "the emulated engine reports the worker restarted (a real one would, under the on-failure policy)"
        : `Docker restarted the worker (RestartCount ${await host.workerRestarts()}): without the sentry it would ` +
          "stay down until the region came back",
    );

    await region.set("answer");
    const backAt = sentry.logs.length;
    say("the region answers again");
    const reachable = await sentry.waitForLog((e) => e.message.startsWith("[ecs-online] ecs is reachable"));
    say(`sentry: "${reachable.message}" (strategy ${reachable.strategy})`);
    const handedBack = await sentry.waitForLog((e) => e.message.includes("hand-back complete: clear the journal"));
    for (const e of actions(sentry, "ecs-online", backAt)) say(`sentry: ${describeAction(e)}`);
    say(`host: ${await host.describe()}`);
    const agentAfter = await host.agentState();
    const onlineActions = actions(sentry, "ecs-online", backAt).map((e) => e.message);
    const removedWorker = onlineActions.some((m) => m.includes("stopping & removing"));
    const unpausedLast = onlineActions.at(-1)?.includes("ecs agent unpaused") ?? false;
    sentry.kill("SIGTERM");
    const exit = await sentry.exited;
    say(`sentry stopped by SIGTERM, exit code ${exit.code}`);
    const handBackS = (Date.parse(handedBack.time) - Date.parse(reachable.time)) / 1000;
    return {
      expected: `offline within ${THRESHOLD * INTERVAL_S + TIMEOUT_S} s, agent paused, crashed container restarted; ` +
        "online: restarted container removed, agent unpaused last" + (host.dryRun ? " (dry run)" : ""),
      observed: `offline after ${detectionS.toFixed(1)} s, agent ${agentDuringOutage}, worker restarted; ` +
        `hand-back in ${handBackS.toFixed(1)} s, worker ${
          removedWorker ? (host.dryRun ? "would be removed" : "removed") : "kept"
        }, agent ${agentAfter}` +
        (host.dryRun ? " (dry run: nothing changed)" : ""),
      ok: exit.code === 0 && detectionS <= THRESHOLD * INTERVAL_S + TIMEOUT_S + 0.5 && removedWorker &&
        (host.dryRun || (unpausedLast && agentDuringOutage === "paused" && agentAfter === "running")),
    };
  } finally {
    await host.close();
    await Deno.remove(dir, { recursive: true });
  }
}

export const scenario: Scenario = {
  title: "network-sentry: ride out a region outage, hand back cleanly",
  intro: "An ECS Anywhere host loses its region. The sentry pauses the ECS agent and lets Docker restart " +
    "crashing task containers; when the region returns it removes what Docker restarted and hands back.",
  run: (narrator) => run((text) => narrator.say(text)),
};

if (import.meta.main) {
  const started = performance.now();
  const outcome = await scenario.run({
    say: (text) => console.log(`  [${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${text}`),
  });
  console.log(outcome);
  Deno.exit(outcome.ok ? 0 : 1);
}
