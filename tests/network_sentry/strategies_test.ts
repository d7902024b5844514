/**
 * The sentry as its own process (the compiled binary's permissions) against a real private Docker
 * engine and the regional-endpoint emulator: each strategy end to end, flapping, dry run, --once,
 * SIGTERM, status and resume.
 * @module
 */
import assert from "node:assert/strict";
import type { DockerEngine } from "../../sim/docker_engine.ts";
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

/** The region goes away, Docker keeps the crashing container alive, the region comes back. */
async function outage(f: Fixture): Promise<void> {
  await f.endpoint.set("refuse");
  await waitUntil("the agent is paused and ECS containers are on on-failure", () => offlineApplied(f.engine));
  await waitUntil(
    "Docker restarted the crashing container",
    async () => (await f.engine.state("crasher"))!.restartCount >= 1,
  );
  await f.endpoint.set("answer");
}

async function assertUntouchedBystanders(engine: DockerEngine): Promise<void> {
  const other = (await engine.state("not-ecs"))!;
  assert.equal(other.status, "running");
  assert.equal(other.policy, "no");
}

async function startedHost(c: SentryCase, extra: string[] = []) {
  await c.fixture.endpoint.set("answer");
  await standardHost(c.fixture.engine, 3);
  const sentry = c.start(extra);
  await sentry.waitForLog((e) => e.message.startsWith("[startup] probing"));
  return sentry;
}

Deno.test({
  ...options,
  name: "cleanup: restarted container removed, the rest restored, agent unpaused, journal cleared",
  async fn() {
    const c = new SentryCase(fixture!, "cleanup");
    await using sentry = await startedHost(c);
    await outage(fixture!);
    await sentry.waitForLog(handedBack);
    const states = await fixture!.engine.states();
    assert.equal(states.has("crasher"), false, "the container Docker restarted is gone");
    assert.equal(states.get("web")?.policy, "no");
    assert.equal(states.get("web")?.status, "running");
    assert.equal(states.get("ecs-agent")?.status, "running");
    await assertUntouchedBystanders(fixture!.engine);
    assert.equal((await c.journal())?.mode, "online");
    const order = sentry.logs.map((e) => e.message).filter((m) => /stopping & removing|ecs agent (un)?paused/.test(m));
    assert.deepEqual(order.slice(-2), [
      "[ecs-online] container has been restarted by docker, stopping & removing..",
      "[ecs-online] ecs agent unpaused..",
    ]);
    // The metrics file is rewritten at the end of the probe round that logged the hand-back.
    const handBackCounted = /^ecs_network_sentry_transitions_total\{to="online"\} 1$/m;
    await waitUntil(
      "the metrics show the hand-back",
      async () => handBackCounted.test(await Deno.readTextFile(c.metricsFile)),
    );
    const metrics = await Deno.readTextFile(c.metricsFile);
    assert.match(metrics, /^ecs_network_sentry_transitions_total\{to="offline"\} 1$/m);
    assert.match(metrics, /^ecs_network_sentry_mode\{mode="online"\} 1$/m);
    const fileLog = await Deno.readTextFile(c.logFile);
    assert.match(fileLog, / INFO PID_\d+ \[ecs-offline\] ecs unreachable, configuring container restart policy\.\./);
    assert.match(fileLog, / INFO PID_\d+ \[ecs-offline\] set container restart policy: \{"Name":"on-failure",/);
    assert.match(fileLog, / INFO PID_\d+ \[ecs-online\] ecs is reachable\.\./);
    // Every probe round at INFO, as eINS logged it.
    assert.match(fileLog, / INFO PID_\d+ \[begin\] connectivity test\.\./);
    assert.match(fileLog, / INFO PID_\d+ \[connect\] ecs at eu-test-1 is available\.\./);
    assert.match(fileLog, / INFO PID_\d+ \[end\] sleeping for [\d.]+ seconds\.\./);
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "preserve: policies restored and agent unpaused; the restarted container is left to the agent",
  async fn() {
    const c = new SentryCase(fixture!, "preserve");
    await using sentry = await startedHost(c, ["--restart-strategy", "preserve"]);
    await outage(fixture!);
    await sentry.waitForLog(handedBack);
    const states = await fixture!.engine.states();
    assert.equal(states.get("crasher")?.policy, "no");
    assert.ok((states.get("crasher")?.restartCount ?? 0) >= 1);
    assert.equal(states.get("web")?.policy, "no");
    assert.equal(states.get("ecs-agent")?.status, "running");
    await assertUntouchedBystanders(fixture!.engine);
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "manual: agent kept paused with the exact resume command; resume refused while offline, then hands back",
  async fn() {
    const c = new SentryCase(fixture!, "manual");
    await using sentry = await startedHost(c, ["--restart-strategy", "manual"]);
    await fixture!.endpoint.set("refuse");
    await waitUntil("offline", () => offlineApplied(fixture!.engine));
    const refused = await c.run(["resume", "--log-format", "text"]);
    assert.equal(refused.code, 3, refused.stdout + refused.stderr);
    assert.match(refused.stdout, /\[resume\] refused: the sentry is offline/);
    await outage(fixture!);
    const hint = await sentry.waitForLog((e) => e.message.includes("the ECS agent stays paused"));
    assert.match(String(hint.command), new RegExp(`^ecs-network-sentry resume --region eu-test-1 --state-file \\S+`));
    await waitUntil("policies restored", async () => (await fixture!.engine.state("crasher"))?.policy === "no");
    await new Promise((r) => setTimeout(r, 600));
    assert.equal((await fixture!.engine.state("ecs-agent"))?.status, "paused", "the agent waits for the operator");
    assert.equal((await c.journal())?.mode, "awaiting-resume");
    const resumed = await c.run(["resume"]);
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    assert.equal((await fixture!.engine.state("ecs-agent"))?.status, "running");
    assert.equal((await c.journal())?.mode, "online");
    assert.ok(await fixture!.engine.state("crasher"), "manual removes nothing");
    await assertUntouchedBystanders(fixture!.engine);
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "cutover: the restarted container goes only once the agent's replacement is healthy",
  async fn() {
    const c = new SentryCase(fixture!, "cutover");
    await using sentry = await startedHost(c, ["--restart-strategy", "cutover"]);
    await outage(fixture!);
    await waitUntil("agent unpaused", async () => (await fixture!.engine.state("ecs-agent"))?.status === "running");
    await new Promise((r) => setTimeout(r, 1000));
    const waiting = await fixture!.engine.state("crasher");
    assert.ok(waiting, "no replacement yet: the restarted container stays");
    assert.equal(waiting.policy, "no");
    assert.equal((await c.journal())?.mode, "cutover");
    await fixture!.engine.createTask({
      name: "worker-replacement",
      family: "batch",
      containerName: "worker",
      behaviour: "healthy",
      healthCheck: true,
    });
    await sentry.waitForLog(handedBack);
    assert.equal(await fixture!.engine.state("crasher"), undefined);
    assert.equal((await fixture!.engine.state("worker-replacement"))?.status, "running");
    assert.equal((await fixture!.engine.state("web"))?.policy, "no");
    await assertUntouchedBystanders(fixture!.engine);
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "cutover: without a health check the replacement counts once it has run --cutover-settle",
  async fn() {
    const c = new SentryCase(fixture!, "cutover-settle");
    await using sentry = await startedHost(c, ["--restart-strategy", "cutover", "--cutover-settle", "3"]);
    await outage(fixture!);
    await waitUntil("the cutover began", async () => (await c.journal())?.mode === "cutover");
    await fixture!.engine.createTask({
      name: "worker-replacement",
      family: "batch",
      containerName: "worker",
      behaviour: "healthy",
    });
    const replacement = (await fixture!.engine.state("worker-replacement"))!;
    const removed = await sentry.waitForLog((e) => e.message.includes("stopping & removing"));
    assert.equal(removed.container, "crasher");
    assert.equal(removed.why, "the agent's replacement worker-replacement runs");
    const ranFor = Date.parse(removed.time) - Date.parse(replacement.startedAt);
    assert.ok(ranFor >= 3000, `removed when the replacement had run ${ranFor} ms`);
    await sentry.waitForLog(handedBack);
    assert.equal(await fixture!.engine.state("crasher"), undefined);
    assert.equal((await fixture!.engine.state("worker-replacement"))?.status, "running");
    assert.equal((await fixture!.engine.state("web"))?.status, "running", "web was not restarted: kept");
    await assertUntouchedBystanders(fixture!.engine);
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "cutover: with no replacement, the restarted container goes after --cutover-timeout",
  async fn() {
    const c = new SentryCase(fixture!, "cutover-timeout");
    await using sentry = await startedHost(c, ["--restart-strategy", "cutover", "--cutover-timeout", "2"]);
    await outage(fixture!);
    let since = 0;
    await waitUntil("the cutover began", async () => {
      const journal = await c.journal();
      since = journal?.since ?? 0;
      return journal?.mode === "cutover";
    });
    const removed = await sentry.waitForLog((e) => e.message.includes("stopping & removing"));
    assert.equal(removed.container, "crasher");
    assert.equal(removed.why, "cutover timeout passed");
    const waited = Date.parse(removed.time) - since;
    assert.ok(waited >= 2000, `removed ${waited} ms after the cutover began`);
    await sentry.waitForLog(handedBack);
    assert.equal(await fixture!.engine.state("crasher"), undefined);
    assert.equal((await fixture!.engine.state("web"))?.policy, "no");
    assert.equal((await fixture!.engine.state("ecs-agent"))?.status, "running");
    assert.equal((await c.journal())?.mode, "online");
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "flapping below the thresholds never takes the host offline",
  async fn() {
    const c = new SentryCase(fixture!, "flapping");
    await using sentry = await startedHost(c);
    await fixture!.endpoint.flap(["answer", "reset"]);
    await waitUntil(
      "several failed probes were seen",
      () => sentry.logs.filter((e) => e.level === "warning").length >= 5,
    );
    await fixture!.endpoint.set("answer");
    assert.equal(sentry.logs.some((e) => e.message.includes("[ecs-offline]")), false);
    const states = await fixture!.engine.states();
    assert.equal(states.get("ecs-agent")?.status, "running");
    assert.equal(states.get("web")?.policy, "no");
    assert.equal(await c.journal(), undefined, "no journal was ever written");
    assert.match(await Deno.readTextFile(c.metricsFile), /^ecs_network_sentry_transitions_total\{to="offline"\} 0$/m);
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "--dry-run logs every action and changes nothing",
  async fn() {
    const c = new SentryCase(fixture!, "dry-run");
    await using sentry = await startedHost(c, ["--dry-run"]);
    await fixture!.endpoint.set("refuse");
    await sentry.waitForLog((e) => e.message === "[ecs-offline] dry run, would do: ecs agent paused..");
    await sentry.waitForLog((e) =>
      e.message.startsWith("[ecs-offline] dry run, would do: set container restart policy")
    );
    await new Promise((r) => setTimeout(r, 600));
    const states = await fixture!.engine.states();
    assert.equal(states.get("ecs-agent")?.status, "running");
    assert.equal(states.get("web")?.policy, "no");
    assert.equal(states.get("crasher")?.policy, "no");
    assert.equal(await c.journal(), undefined);
    await assert.rejects(Deno.stat(c.journalFile.replace(/\.json$/, ".status.json")), Deno.errors.NotFound);
    await sentry.waitForLog((e) => e.message.startsWith("[end] dry run, would write the metrics file"));
    await assert.rejects(Deno.stat(c.metricsFile), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(`${c.journalFile}.lock`), Deno.errors.NotFound);
    assert.equal(await stopped(sentry), 0);
  },
});

Deno.test({
  ...options,
  name: "--dry-run of a hand-back from a real offline journal logs it and leaves journal, files and Docker as they are",
  async fn() {
    const c = new SentryCase(fixture!, "dry-run-hand-back");
    await standardHost(fixture!.engine, 30);
    await fixture!.endpoint.set("refuse");
    const down = await c.run(["--once", "--failure-threshold", "1"]);
    assert.equal(down.code, 0, down.stderr);
    assert.ok(await offlineApplied(fixture!.engine));
    await fixture!.engine.crash("web");
    await waitUntil("Docker restarted web", async () => {
      const web = await fixture!.engine.state("web");
      return web?.status === "running" && web.restartCount >= 1;
    });
    await fixture!.endpoint.set("answer");
    const files = [c.journalFile, c.journalFile.replace(/\.json$/, ".status.json"), c.metricsFile];
    const before = await Promise.all(files.map((f) => Deno.readTextFile(f)));
    const dockerBefore = await fixture!.engine.states();

    const dry = await c.run(["--dry-run", "--once", "--recovery-threshold", "1"]);
    assert.equal(dry.code, 0, dry.stderr);
    const messages = dry.stdout.trim().split("\n").map((line) => JSON.parse(line).message as string);
    assert.ok(messages.includes("[ecs-online] ecs is reachable.."), dry.stdout);
    assert.ok(
      messages.includes(
        "[ecs-online] dry run, would do: container has been restarted by docker, stopping & removing..",
      ),
      dry.stdout,
    );
    assert.ok(messages.includes("[ecs-online] dry run, would do: ecs agent unpaused.."), dry.stdout);
    assert.deepEqual(await Promise.all(files.map((f) => Deno.readTextFile(f))), before, "journal, status, metrics");
    const dockerAfter = await fixture!.engine.states();
    for (const name of ["ecs-agent", "web", "crasher", "not-ecs"]) {
      const [was, is] = [dockerBefore.get(name)!, dockerAfter.get(name)];
      assert.deepEqual(
        is && [is.id, is.status, is.policy, is.restartCount, is.startedAt],
        [was.id, was.status, was.policy, was.restartCount, was.startedAt],
        name,
      );
    }
  },
});

Deno.test({
  ...options,
  name: "--once: one probe and one reconcile per run; thresholds of 1 switch in a single run",
  async fn() {
    const c = new SentryCase(fixture!, "once");
    await standardHost(fixture!.engine, 30);
    await fixture!.endpoint.set("refuse");
    const down = await c.run(["--once", "--failure-threshold", "1"]);
    assert.equal(down.code, 0, down.stderr);
    assert.ok(await offlineApplied(fixture!.engine));
    assert.equal((await c.journal())?.mode, "offline");
    await fixture!.endpoint.set("answer");
    const up = await c.run(["--once", "--recovery-threshold", "1"]);
    assert.equal(up.code, 0, up.stderr);
    assert.equal((await fixture!.engine.state("ecs-agent"))?.status, "running");
    assert.equal((await fixture!.engine.state("web"))?.policy, "no");
    assert.equal((await c.journal())?.mode, "online");
  },
});

Deno.test({
  ...options,
  name: "SIGTERM mid-outage exits 0 and undoes nothing; status shows it; a restart resumes and hands back",
  async fn() {
    const c = new SentryCase(fixture!, "sigterm");
    const first = await startedHost(c);
    await fixture!.endpoint.set("blackhole");
    await waitUntil("offline", () => offlineApplied(fixture!.engine));
    assert.equal(await stopped(first, "SIGTERM"), 0);
    assert.ok(first.logs.some((e) => e.message.startsWith("[shutdown] stopping on SIGTERM")));
    assert.ok(await offlineApplied(fixture!.engine), "nothing was undone");
    const status = await c.run(["status"]);
    assert.equal(status.code, 0, status.stderr);
    const document = JSON.parse(status.stdout);
    assert.equal(document.mode, "offline");
    assert.equal(document.lastProbe.reachable, false);
    assert.match(document.lastProbe.reason, /^timeout/);
    assert.ok(document.consecutiveFailures >= 2);
    assert.deepEqual(document.journal.containers.map((x: { name: string }) => x.name).sort(), ["crasher", "web"]);
    await fixture!.endpoint.set("answer");
    await using second = c.start();
    await second.waitForLog((e) => e.message.startsWith("[startup] resuming from the journal: offline"));
    await second.waitForLog(handedBack);
    assert.equal((await fixture!.engine.state("ecs-agent"))?.status, "running");
    assert.equal(await stopped(second), 0);
  },
});
