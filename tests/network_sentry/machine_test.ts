import assert from "node:assert/strict";
import {
  type Action,
  countProbe,
  type Journal,
  needsDocker,
  NO_PROBES,
  type Observation,
  type ObservedContainer,
  ONLINE,
  plan,
  type PlanSettings,
  REPLACEMENT_SETTLE_MS,
  resumeSteps,
  type Step,
  type Verdict,
  verdictOf,
  WRITE_JOURNAL,
} from "../../lib/network_sentry/machine.ts";
import { STRATEGIES, type Strategy } from "../../lib/network_sentry/settings.ts";

const T0 = Date.parse("2026-11-22T09:00:00Z");
const NO: ObservedContainer["restartPolicy"] = { Name: "no", MaximumRetryCount: 0 };
const ON_FAILURE = { Name: "on-failure", MaximumRetryCount: 0 };

function container(id: string, overrides: Partial<ObservedContainer> = {}): ObservedContainer {
  return {
    id,
    name: `ecs-${id}`,
    state: "running",
    cluster: "cluster-1",
    taskArn: `arn:aws:ecs:eu-west-1:123:task/cluster-1/${id}`,
    family: `family-${id}`,
    containerName: `app-${id}`,
    restartCount: 0,
    restartPolicy: NO,
    startedAt: "2026-11-22T08:00:00Z",
    ...overrides,
  };
}

function settings(strategy: Strategy, overrides: Partial<PlanSettings> = {}): PlanSettings {
  return { strategy, retries: 0, cutoverTimeoutMs: 300_000, ...overrides };
}

const agent = (state = "running") => ({ id: "agent", name: "ecs-agent", state });

function kinds(steps: readonly Step[]): string[] {
  return steps.flatMap((s) => s.actions.map((a) => `${a.kind}:${a.id}`));
}

function lastJournal(steps: readonly Step[], before: Journal): Journal {
  return steps.length ? steps[steps.length - 1].journal : before;
}

Deno.test("thresholds: a verdict needs that many probes in a row; flapping never reaches one", () => {
  const thresholds = { failureThreshold: 2, recoveryThreshold: 3 };
  let counters = NO_PROBES;
  const verdicts: Verdict[] = [];
  for (const ok of [false, true, false, true, false, true]) {
    counters = countProbe(counters, ok);
    verdicts.push(verdictOf(counters, thresholds));
  }
  assert.deepEqual(new Set(verdicts), new Set(["undecided"]));
  counters = countProbe(countProbe(NO_PROBES, false), false);
  assert.equal(verdictOf(counters, thresholds), "down");
  counters = countProbe(countProbe(counters, true), true);
  assert.equal(verdictOf(counters, thresholds), "undecided");
  assert.equal(verdictOf(countProbe(counters, true), thresholds), "up");
});

Deno.test("Docker is left alone while online and the region answers", () => {
  assert.equal(needsDocker(ONLINE, "up"), false);
  assert.equal(needsDocker(ONLINE, "undecided"), false);
  assert.equal(needsDocker(ONLINE, "down"), true);
  assert.equal(needsDocker({ ...ONLINE, mode: "offline" }, "up"), true);
});

Deno.test("offline transition: journal first, agent paused, running ECS containers recorded then on-failure", () => {
  const observation: Observation = {
    agent: agent(),
    containers: [
      container("a"),
      container("b", { restartPolicy: { Name: "always", MaximumRetryCount: 0 } }),
      container("stopped", { state: "exited" }),
    ],
  };
  const steps = plan({
    journal: ONLINE,
    verdict: "down",
    observation,
    settings: settings("cleanup", { retries: 5 }),
    now: T0,
  });
  assert.deepEqual(steps.map((s) => s.title), [
    WRITE_JOURNAL,
    "hold the ECS agent paused",
    WRITE_JOURNAL,
    "keep ECS containers alive with an on-failure restart policy",
  ]);
  assert.equal(steps[0].journal.mode, "offline");
  assert.equal(steps[0].journal.since, T0);
  assert.deepEqual(steps[0].journal.containers, [], "the journal is written before anything is recorded or changed");
  assert.deepEqual(kinds(steps), ["pause-agent:agent", "set-policy:a", "set-policy:b"]);
  const recorded = steps[2].journal.containers;
  assert.deepEqual(recorded.map((c) => [c.id, c.previousPolicy.Name, c.restartCount]), [
    ["a", "no", 0],
    ["b", "always", 0],
  ]);
  assert.equal(recorded[0].taskArn, "arn:aws:ecs:eu-west-1:123:task/cluster-1/a");
  assert.deepEqual(steps[2].actions, [], "containers are recorded before their policy changes");
  const policies = steps[3].actions.map((a) => (a as Extract<Action, { kind: "set-policy" }>).policy);
  const onFailure5 = { Name: "on-failure", MaximumRetryCount: 5 };
  assert.deepEqual(policies, [onFailure5, onFailure5]);
});

Deno.test("online and undecided: nothing to do", () => {
  const observation: Observation = { agent: agent(), containers: [container("a")] };
  for (const verdict of ["up", "undecided"] as const) {
    assert.deepEqual(plan({ journal: ONLINE, verdict, observation, settings: settings("cleanup"), now: T0 }), []);
  }
});

Deno.test("while offline every probe re-asserts: re-pause after a reboot, re-set drifted policies, record newcomers", () => {
  const journal: Journal = {
    version: 1,
    mode: "offline",
    since: T0,
    agentPausedBefore: false,
    containers: [
      { ...container("a"), previousPolicy: NO },
      { ...container("gone"), previousPolicy: NO },
    ].map(({ restartPolicy: _p, state: _s, ...c }) => c),
  };
  const observation: Observation = {
    agent: agent("running"),
    containers: [container("a", { restartPolicy: NO }), container("new", { restartPolicy: NO })],
  };
  const steps = plan({ journal, verdict: "undecided", observation, settings: settings("cleanup"), now: T0 + 60_000 });
  assert.deepEqual(kinds(steps), ["pause-agent:agent", "set-policy:a", "set-policy:new"]);
  const final = lastJournal(steps, journal);
  assert.deepEqual(final.containers.map((c) => c.id), ["a", "new"], "a vanished container leaves the journal");
  assert.equal(final.since, T0, "the outage keeps its start");

  const settled: Observation = {
    agent: agent("paused"),
    containers: [container("a", { restartPolicy: ON_FAILURE }), container("new", { restartPolicy: ON_FAILURE })],
  };
  assert.deepEqual(
    plan({ journal: final, verdict: "down", observation: settled, settings: settings("cleanup"), now: T0 }),
    [],
  );
});

Deno.test("an agent already paused by someone else is neither paused nor unpaused by the sentry", () => {
  const observation: Observation = { agent: agent("paused"), containers: [container("a")] };
  const offline = plan({ journal: ONLINE, verdict: "down", observation, settings: settings("cleanup"), now: T0 });
  assert.deepEqual(kinds(offline), ["set-policy:a"]);
  const journal = lastJournal(offline, ONLINE);
  assert.equal(journal.agentPausedBefore, true);
  const back = plan({
    journal,
    verdict: "up",
    observation: { agent: agent("paused"), containers: [container("a", { restartPolicy: ON_FAILURE })] },
    settings: settings("cleanup"),
    now: T0 + 1000,
  });
  assert.deepEqual(kinds(back), ["set-policy:a"]);
  assert.equal(lastJournal(back, journal).mode, "online");
});

/** An outage in which `crash` was restarted by its policy and `reboot` by a daemon restart; `calm` was not. */
function outage(): { journal: Journal; observation: Observation } {
  const journal: Journal = {
    version: 1,
    mode: "offline",
    since: T0,
    agentPausedBefore: false,
    containers: ["calm", "crash", "reboot"].map((id) => {
      const { restartPolicy: _p, state: _s, ...c } = container(id);
      return { ...c, previousPolicy: NO };
    }),
  };
  const observation: Observation = {
    agent: agent("paused"),
    containers: [
      container("calm", { restartPolicy: ON_FAILURE }),
      container("crash", { restartPolicy: ON_FAILURE, restartCount: 3 }),
      container("reboot", { restartPolicy: ON_FAILURE, startedAt: "2026-11-22T09:05:00Z" }),
      container("unrecorded-exited", { state: "exited" }),
    ],
  };
  return { journal, observation };
}

Deno.test("cleanup: remove restarted containers, restore the rest, unpause the agent last, clear the journal last", () => {
  const { journal, observation } = outage();
  const steps = plan({ journal, verdict: "up", observation, settings: settings("cleanup"), now: T0 + 600_000 });
  assert.deepEqual(kinds(steps), ["remove:crash", "remove:reboot", "set-policy:calm", "unpause-agent:agent"]);
  assert.equal(steps[0].journal.mode, "handing-back");
  assert.equal(steps[0].journal.strategy, "cleanup");
  assert.deepEqual(steps[0].journal.containers.map((c) => [c.id, c.restarted]), [
    ["calm", false],
    ["crash", true],
    ["reboot", true],
  ]);
  assert.deepEqual(steps.at(-1)!.journal, ONLINE);
  assert.deepEqual(steps.at(-1)!.actions, []);
});

Deno.test("preserve: restore every policy, unpause, remove nothing", () => {
  const { journal, observation } = outage();
  const steps = plan({ journal, verdict: "up", observation, settings: settings("preserve"), now: T0 + 1 });
  assert.deepEqual(kinds(steps), ["set-policy:calm", "set-policy:crash", "set-policy:reboot", "unpause-agent:agent"]);
  assert.deepEqual(steps.at(-1)!.journal, ONLINE);
});

Deno.test("manual: with restarted containers the agent stays paused until resume", () => {
  const { journal, observation } = outage();
  const steps = plan({ journal, verdict: "up", observation, settings: settings("manual"), now: T0 + 1 });
  assert.deepEqual(kinds(steps), ["set-policy:calm", "set-policy:crash", "set-policy:reboot"]);
  const waiting = lastJournal(steps, journal);
  assert.equal(waiting.mode, "awaiting-resume");
  const restored: Observation = {
    ...observation,
    containers: observation.containers.map((c) => ({ ...c, restartPolicy: NO })),
  };
  assert.deepEqual(
    plan({ journal: waiting, verdict: "up", observation: restored, settings: settings("manual"), now: T0 + 2 }),
    [],
  );
  const resumed = resumeSteps(waiting, restored);
  assert.deepEqual(kinds(resumed), ["unpause-agent:agent"]);
  assert.deepEqual(resumed.at(-1)!.journal, ONLINE);
  assert.deepEqual(resumeSteps(ONLINE, restored), [], "resume does nothing unless a hand-back waits");
});

Deno.test("manual: without restarted containers it hands back at once", () => {
  const { journal, observation } = outage();
  const calmOnly: Journal = { ...journal, containers: journal.containers.filter((c) => c.id === "calm") };
  const steps = plan({ journal: calmOnly, verdict: "up", observation, settings: settings("manual"), now: T0 + 1 });
  assert.deepEqual(kinds(steps), ["set-policy:calm", "unpause-agent:agent"]);
  assert.deepEqual(steps.at(-1)!.journal, ONLINE);
});

Deno.test("cutover: restarted containers go only once their replacement has run 10 s, is healthy, or time is up", () => {
  const { journal, observation } = outage();
  const now = T0 + 600_000;
  const first = plan({ journal, verdict: "up", observation, settings: settings("cutover"), now });
  assert.deepEqual(kinds(first), ["set-policy:calm", "set-policy:crash", "set-policy:reboot", "unpause-agent:agent"]);
  const cutover = lastJournal(first, journal);
  assert.equal(cutover.mode, "cutover");
  const restored = observation.containers.map((c) => ({ ...c, restartPolicy: NO }));
  const at = (ms: number) => new Date(ms).toISOString();
  const replacement = (id: string, of: string, startedAt: number, health?: string) =>
    container(id, { family: `family-${of}`, containerName: `app-${of}`, startedAt: at(startedAt), health });
  const step = (containers: ObservedContainer[], when: number) =>
    plan({
      journal: cutover,
      verdict: "up",
      observation: { agent: agent(), containers },
      settings: settings("cutover"),
      now: when,
    });

  assert.deepEqual(step(restored, now + 1000), [], "no replacement yet: wait");
  const young = [...restored, replacement("new-crash", "crash", now)];
  assert.deepEqual(step(young, now + REPLACEMENT_SETTLE_MS - 1), [], "a replacement younger than 10 s does not count");
  const settled = step(young, now + REPLACEMENT_SETTLE_MS);
  assert.deepEqual(kinds(settled), ["remove:crash"]);
  assert.equal(lastJournal(settled, cutover).mode, "cutover", "reboot still waits for its replacement");
  const healthy = step([...young, replacement("new-reboot", "reboot", now + 9000, "healthy")], now + 9500);
  assert.deepEqual(kinds(healthy), ["remove:reboot"], "healthy counts at once; crash's replacement is still young");
  const both = step([...young, replacement("new-reboot", "reboot", now, "healthy")], now + REPLACEMENT_SETTLE_MS);
  assert.deepEqual(kinds(both), ["remove:crash", "remove:reboot"]);
  assert.deepEqual(both.at(-1)!.journal, ONLINE);
  const late = step(restored, now + 300_000);
  assert.deepEqual(kinds(late), ["remove:crash", "remove:reboot"], "after --cutover-timeout they go regardless");
  assert.deepEqual(late.at(-1)!.journal, ONLINE);
  const sibling = [...restored.filter((c) => c.id !== "calm"), {
    ...restored[0],
    family: "family-crash",
    containerName: "app-crash",
  }];
  assert.deepEqual(step(sibling, now + 60_000), [], "a recorded sibling of the same task family is not a replacement");
});

Deno.test("back offline during a hand-back: what was found restarted stays restarted", () => {
  const { journal, observation } = outage();
  const cutover = lastJournal(
    plan({ journal, verdict: "up", observation, settings: settings("cutover"), now: T0 + 1 }),
    journal,
  );
  const again = plan({
    journal: cutover,
    verdict: "down",
    observation: {
      agent: agent("running"),
      containers: observation.containers.map((c) => ({ ...c, restartPolicy: NO })),
    },
    settings: settings("cutover"),
    now: T0 + 2,
  });
  const offline = lastJournal(again, cutover);
  assert.equal(offline.mode, "offline");
  assert.equal(offline.strategy, undefined);
  assert.deepEqual(kinds(again), ["pause-agent:agent", "set-policy:calm", "set-policy:crash", "set-policy:reboot"]);
  const settledObservation: Observation = {
    agent: agent("paused"),
    containers: observation.containers.map((c) => ({ ...c, restartCount: 0, startedAt: "2026-11-22T08:00:00Z" })),
  };
  const handBack = plan({
    journal: offline,
    verdict: "up",
    observation: settledObservation,
    settings: settings("cleanup"),
    now: T0 + 3,
  });
  assert.deepEqual(kinds(handBack).filter((k) => k.startsWith("remove")), ["remove:crash", "remove:reboot"]);
});

// --- crash at every step, then resume from the journal ---

interface World {
  agent: string;
  containers: Map<string, ObservedContainer>;
}

function observe(world: World): Observation {
  return { agent: agent(world.agent), containers: [...world.containers.values()] };
}

function apply(world: World, action: Action): void {
  const target = world.containers.get(action.id);
  switch (action.kind) {
    case "pause-agent":
      world.agent = "paused";
      return;
    case "unpause-agent":
      world.agent = "running";
      return;
    case "set-policy":
      if (target) world.containers.set(action.id, { ...target, restartPolicy: action.policy });
      return;
    case "remove":
      world.containers.delete(action.id);
  }
}

/** Runs plans to a fixed point; `crashAt` stops the first run after that many journal writes (+ half its actions). */
function drive(
  world: World,
  journal: Journal,
  verdict: Verdict,
  strategy: Strategy,
  crashAt?: { step: number; partial: boolean },
) {
  let saved = journal;
  for (let round = 0; round < 10; round++) {
    const steps = plan({
      journal: saved,
      verdict,
      observation: observe(world),
      settings: settings(strategy, { cutoverTimeoutMs: 0 }),
      now: T0 + round,
    });
    if (steps.length === 0) return saved;
    for (const [index, step] of steps.entries()) {
      saved = step.journal;
      const crashing = round === 0 && crashAt?.step === index;
      const actions = crashing && crashAt.partial
        ? step.actions.slice(0, Math.ceil(step.actions.length / 2))
        : step.actions;
      actions.forEach((action) => apply(world, action));
      if (crashing) break;
    }
  }
  throw new Error("no fixed point after 10 rounds");
}

function outageWorld(): World {
  const { observation } = outage();
  return {
    agent: "running",
    containers: new Map(
      observation.containers.map((
        c,
      ) => [c.id, { ...c, restartPolicy: NO, restartCount: 0, startedAt: "2026-11-22T08:00:00Z" }]),
    ),
  };
}

for (const strategy of STRATEGIES) {
  Deno.test(`${strategy}: a crash at any step of either transition converges after a restart`, () => {
    for (let offlineCrash = 0; offlineCrash <= 2; offlineCrash++) {
      for (let onlineCrash = 0; onlineCrash <= 4; onlineCrash++) {
        for (const partial of [false, true]) {
          const world = outageWorld();
          let journal = drive(world, ONLINE, "down", strategy, { step: offlineCrash, partial });
          assert.equal(world.agent, "paused");
          assert.equal(journal.mode, "offline");
          for (const c of world.containers.values()) {
            if (c.state === "running") assert.deepEqual(c.restartPolicy, ON_FAILURE, `${c.id} kept alive`);
          }
          // During the outage Docker restarts two containers.
          const crash = world.containers.get("crash")!;
          world.containers.set("crash", { ...crash, restartCount: 2 });
          const reboot = world.containers.get("reboot")!;
          world.containers.set("reboot", { ...reboot, startedAt: "2026-11-22T09:30:00Z" });
          journal = drive(world, journal, "up", strategy, { step: onlineCrash, partial });
          const where = `${strategy}, offline crash ${offlineCrash}, online crash ${onlineCrash}, partial ${partial}`;
          for (const c of world.containers.values()) {
            assert.notEqual(c.restartPolicy.Name, "on-failure", `${where}: ${c.id} left on on-failure`);
          }
          assert.ok(world.containers.has("calm"), `${where}: a container that never restarted was removed`);
          assert.ok(world.containers.has("unrecorded-exited"), `${where}: an unmanaged container was removed`);
          if (strategy === "manual") {
            assert.equal(journal.mode, "awaiting-resume", where);
            assert.equal(world.agent, "paused", where);
          } else {
            assert.deepEqual(journal, ONLINE, where);
            assert.equal(world.agent, "running", `${where}: agent left paused`);
          }
          const restartedLeft = ["crash", "reboot"].filter((id) => world.containers.has(id));
          assert.deepEqual(
            restartedLeft,
            strategy === "cleanup" || strategy === "cutover" ? [] : ["crash", "reboot"],
            where,
          );
        }
      }
    }
  });
}
