/**
 * What the sentry finds on a host rather than what it did itself, on the real engine: changes left by
 * eINS (or by a sentry whose journal was lost), an agent an operator paused, a journal from another host
 * or agent, a full disk under the journal, stale temp files, awslogs containers that cannot restart
 * offline, and the cleanup window in which a kept container crashes while a restarted one is stopped.
 * @module
 */
import assert from "node:assert/strict";
import type { Journal } from "../../lib/network_sentry/machine.ts";
import { fixtureForFile, handedBack, SentryCase, stopped, waitUntil } from "./harness.ts";

const { fixture, options } = await fixtureForFile();

/** What eINS leaves when it is stopped mid-outage: the agent paused, the ECS containers on on-failure. */
async function einsLeftovers(crasherRestarts: boolean): Promise<void> {
  const engine = fixture!.engine;
  await engine.removeAll();
  await engine.createAgent();
  await engine.pause("ecs-agent");
  await Promise.all([
    engine.createTask({
      name: "web",
      family: "web",
      containerName: "web",
      behaviour: "healthy",
      restartPolicy: "on-failure",
    }),
    engine.createTask({
      name: "crasher",
      family: "batch",
      containerName: "worker",
      behaviour: crasherRestarts ? "crash" : "healthy",
      crashAfter: 1,
      restartPolicy: "on-failure",
    }),
    engine.createUnlabelled("not-ecs"),
  ]);
  if (crasherRestarts) {
    await waitUntil("Docker restarted crasher", async () => (await engine.state("crasher"))!.restartCount >= 1);
  }
}

async function statusOf(c: SentryCase): Promise<Record<string, unknown>> {
  const status = await c.run(["status"]);
  assert.equal(status.code, 0, status.stderr);
  return JSON.parse(status.stdout);
}

Deno.test({
  ...options,
  name: "eINS stopped mid-outage: its leftovers are reported, then adopted once the region answers",
  async fn() {
    const c = new SentryCase(fixture!, "eins-leftovers");
    await einsLeftovers(true);
    await fixture!.endpoint.set("answer");
    // One success is below the recovery threshold: reported, not yet adopted.
    const first = await c.run(["--once"]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /\[takeover\] found changes no journal accounts for/);
    const status = await statusOf(c);
    assert.deepEqual(status.leftovers, { containers: ["crasher", "web"], agentPaused: true });
    const metrics = await Deno.readTextFile(c.metricsFile);
    assert.match(metrics, /^ecs_network_sentry_leftover_containers 2$/m);
    assert.match(metrics, /^ecs_network_sentry_leftover_agent_paused 1$/m);
    assert.equal((await fixture!.engine.state("ecs-agent"))?.status, "paused", "nothing adopted yet");

    await using sentry = c.start();
    await sentry.waitForLog((e) => e.message.startsWith("[takeover] adopting"));
    await sentry.waitForLog(handedBack);
    const states = await fixture!.engine.states();
    assert.equal(states.get("web")?.policy, "no");
    assert.equal(states.get("web")?.status, "running");
    assert.equal(states.has("crasher"), false, "Docker restarted it (RestartCount > 0): removed under cleanup");
    assert.equal(states.get("ecs-agent")?.status, "running");
    assert.equal(states.get("not-ecs")?.policy, "no");
    await waitUntil(
      "the metrics show no leftovers",
      async () => /^ecs_network_sentry_leftover_containers 0$/m.test(await Deno.readTextFile(c.metricsFile)),
    );
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "journal lost while still offline: the leftovers are recorded as ECS made them and handed back",
  async fn() {
    const c = new SentryCase(fixture!, "lost-journal-offline");
    await einsLeftovers(false);
    await fixture!.endpoint.set("refuse");
    const down = await c.run(["--once", "--failure-threshold", "1"]);
    assert.equal(down.code, 0, down.stderr);
    const journal = (await c.journal())!;
    assert.equal(journal.mode, "offline");
    assert.equal(journal.agentPausedBefore, false, "a sentry's pause: ours to undo");
    assert.deepEqual(journal.containers.map((x) => x.previousPolicy.Name), ["no", "no"]);
    await fixture!.endpoint.set("answer");
    const up = await c.run(["--once", "--recovery-threshold", "1"]);
    assert.equal(up.code, 0, up.stderr);
    const states = await fixture!.engine.states();
    assert.equal(states.get("web")?.policy, "no");
    assert.equal(states.get("crasher")?.policy, "no");
    assert.equal(states.get("ecs-agent")?.status, "running");
    assert.equal((await c.journal())?.mode, "online");
  },
});

Deno.test({
  ...options,
  name: "an agent the operator paused, with no sentry's changes around it, is left paused and reported",
  async fn() {
    const c = new SentryCase(fixture!, "operator-pause");
    const engine = fixture!.engine;
    await engine.removeAll();
    await engine.createAgent();
    await engine.createTask({ name: "web", family: "web", containerName: "web", behaviour: "healthy" });
    await engine.pause("ecs-agent");
    await fixture!.endpoint.set("answer");
    for (let run = 0; run < 2; run++) {
      const once = await c.run(["--once", "--recovery-threshold", "1"]);
      assert.equal(once.code, 0, once.stderr);
      assert.match(once.stdout, /\[takeover\] the ECS agent is paused and no sentry change is in sight/);
    }
    assert.equal((await engine.state("ecs-agent"))?.status, "paused");
    assert.equal((await engine.state("web"))?.policy, "no");
    assert.deepEqual((await statusOf(c)).leftovers, { containers: [], agentPaused: true });
  },
});

async function pausedAgentWithJournal(c: SentryCase, journal: Record<string, unknown>): Promise<void> {
  await fixture!.engine.removeAll();
  await fixture!.engine.createAgent();
  await fixture!.engine.pause("ecs-agent");
  await Deno.writeTextFile(c.journalFile, JSON.stringify(journal));
  await fixture!.endpoint.set("answer");
}

Deno.test({
  ...options,
  name: "a journal written on another host, or for another --agent-container, unpauses nothing",
  async fn() {
    const offline = { version: 1, mode: "offline", since: Date.now(), containers: [] };
    const cases = [
      { journal: { ...offline, host: "another-host", agentContainer: "ecs-agent" }, says: /written on another-host/ },
      {
        journal: { ...offline, host: Deno.readTextFileSync("/etc/hostname").trim(), agentContainer: "old-agent" },
        says: /--agent-container old-agent/,
      },
    ];
    for (const [n, { journal, says }] of cases.entries()) {
      const c = new SentryCase(fixture!, `foreign-journal-${n}`);
      await pausedAgentWithJournal(c, journal);
      const run = await c.run(["--once", "--recovery-threshold", "1"]);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stdout + run.stderr, says);
      assert.equal((await fixture!.engine.state("ecs-agent"))?.status, "paused", `case ${n}`);
    }
  },
});

Deno.test({
  ...options,
  name: "stale journal and status temp files are removed on start",
  async fn() {
    const c = new SentryCase(fixture!, "stale-temp");
    await fixture!.engine.removeAll();
    await fixture!.engine.createAgent();
    await fixture!.endpoint.set("answer");
    const stale = [`${c.journalFile}.4242.tmp`, c.journalFile.replace(/\.json$/, ".status.json.4243.tmp")];
    for (const file of stale) await Deno.writeTextFile(file, "{half a journ");
    const run = await c.run(["--once"]);
    assert.equal(run.code, 0, run.stderr);
    for (const file of stale) await assert.rejects(Deno.stat(file), Deno.errors.NotFound, file);
  },
});

Deno.test({
  ...options,
  name: "awslogs containers in blocking mode are warned about at the offline transition and in status",
  async fn() {
    const c = new SentryCase(fixture!, "awslogs");
    const engine = fixture!.engine;
    await engine.removeAll();
    await engine.createAgent();
    await engine.createTask({ name: "web", family: "web", containerName: "web", behaviour: "healthy" });
    const logged = { family: "logged", containerName: "app", behaviour: "healthy" } as const;
    await engine.createTask({ ...logged, name: "logs-blocking", awslogs: {} });
    await engine.createTask({ ...logged, name: "logs-non-blocking", awslogs: { mode: "non-blocking" } });
    await fixture!.endpoint.set("refuse");
    const down = await c.run(["--once", "--failure-threshold", "1"]);
    assert.equal(down.code, 0, down.stderr);
    const warnings = down.stdout.split("\n").map((l) => JSON.parse(l || "{}")).filter((e) =>
      String(e.message).includes("logs through awslogs in blocking mode")
    );
    assert.deepEqual(warnings.map((w) => w.container), ["logs-blocking"]);
    assert.deepEqual((await statusOf(c)).awslogsBlocking, ["logs-blocking"]);
  },
});

Deno.test({
  ...options,
  name: "cleanup window: a kept container that crashes while a restarted one is stopped is not left running",
  async fn() {
    const c = new SentryCase(fixture!, "cleanup-window");
    const engine = fixture!.engine;
    await engine.removeAll();
    await engine.createAgent();
    await engine.createTask({ name: "web", family: "web", containerName: "web", behaviour: "healthy" });
    // ECS's default stopTimeout is 30 s; 4 s leaves a window wide enough to crash web in.
    await engine.createTask({
      name: "slow-stop",
      family: "batch",
      containerName: "worker",
      behaviour: "healthy",
      stopTakes: 4,
    });
    await fixture!.endpoint.set("answer");
    await using sentry = c.start();
    await sentry.waitForLog((e) => e.message.startsWith("[startup] probing"));
    await fixture!.endpoint.set("refuse");
    await waitUntil(
      "slow-stop is on on-failure",
      async () => (await engine.state("slow-stop"))?.policy === "on-failure",
    );
    await engine.crash("slow-stop");
    await waitUntil("Docker restarted slow-stop", async () => (await engine.state("slow-stop"))!.restartCount >= 1);
    await fixture!.endpoint.set("answer");
    await sentry.waitForLog((e) => e.step === "stop and remove containers Docker restarted during the outage");
    await engine.crash("web");
    await sentry.waitForLog(handedBack, 60_000);
    const web = await engine.state("web");
    assert.ok(
      web === undefined || !(web.status === "running" && web.restartCount > 0),
      `web was restarted by Docker and left running: ${JSON.stringify(web)}`,
    );
    assert.equal(web?.policy ?? "no", "no");
    assert.equal(await engine.state("slow-stop"), undefined);
    assert.equal((await engine.state("ecs-agent"))?.status, "running");
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "a full disk under the journal: logged with the path, the host still protected, written once space is back",
  async fn() {
    const dir = await Deno.makeTempDir({ dir: fixture!.dir, prefix: "full-" });
    const mount = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir] }).output();
    assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
    try {
      const c = new SentryCase(fixture!, "full-disk", dir);
      const engine = fixture!.engine;
      await engine.removeAll();
      await engine.createAgent();
      await engine.createTask({ name: "web", family: "web", containerName: "web", behaviour: "healthy" });
      await fixture!.endpoint.set("answer");
      // Fill the file system: the write that fills it fails with ENOSPC, the rest stays.
      await Deno.writeFile(`${dir}/filler`, new Uint8Array(128 * 1024)).catch(() => {});
      await using sentry = c.start();
      await sentry.waitForLog((e) => e.message.startsWith("[startup] probing"));
      await fixture!.endpoint.set("refuse");
      const failed = await sentry.waitForLog((e) => e.message.startsWith("[journal] cannot write"));
      assert.equal(failed.path, c.journalFile);
      await waitUntil("offline from memory", async () => {
        const states = await engine.states();
        return states.get("ecs-agent")?.status === "paused" && states.get("web")?.policy === "on-failure";
      });
      await fixture!.endpoint.set("answer");
      await sentry.waitForLog(handedBack);
      assert.equal((await engine.state("ecs-agent"))?.status, "running");
      assert.equal((await engine.state("web"))?.policy, "no");
      await Deno.remove(`${dir}/filler`);
      await waitUntil(
        "the journal is written again",
        async () => (await c.journal() as Journal | undefined)?.mode === "online",
      );
      assert.equal(await stopped(sentry), 0);
    } finally {
      await new Deno.Command("umount", { args: ["-l", dir] }).output();
    }
  },
});

Deno.test({
  ...options,
  name: "a journal disk remounted read-only mid-run: the sentry keeps protecting the host and hands back",
  async fn() {
    const dir = await Deno.makeTempDir({ dir: fixture!.dir, prefix: "ro-" });
    const mount = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir] }).output();
    assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
    try {
      const c = new SentryCase(fixture!, "read-only", dir);
      const engine = fixture!.engine;
      await engine.removeAll();
      await engine.createAgent();
      await engine.createTask({ name: "web", family: "web", containerName: "web", behaviour: "healthy" });
      await fixture!.endpoint.set("answer");
      await using sentry = c.start();
      await sentry.waitForLog((e) => e.message.startsWith("[startup] probing"));
      // ext4's errors=remount-ro does this to a failing disk; the journal and its lock file become read-only.
      const remount = await new Deno.Command("mount", { args: ["-o", "remount,ro", dir] }).output();
      assert.ok(remount.success, new TextDecoder().decode(remount.stderr));
      await fixture!.endpoint.set("refuse");
      await waitUntil("offline from memory", async () => {
        const states = await engine.states();
        return states.get("ecs-agent")?.status === "paused" && states.get("web")?.policy === "on-failure";
      });
      await fixture!.endpoint.set("answer");
      await sentry.waitForLog(handedBack);
      assert.equal((await engine.state("ecs-agent"))?.status, "running");
      assert.equal((await engine.state("web"))?.policy, "no");
      assert.equal(await stopped(sentry), 0);
    } finally {
      await new Deno.Command("umount", { args: ["-l", dir] }).output();
    }
  },
});
