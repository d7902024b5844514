import assert from "node:assert/strict";
import {
  type Action,
  ADOPT_LEFTOVERS,
  countProbe,
  elapsedSince,
  type Journal,
  leftoversOf,
  type Moment,
  NO_PROBES,
  type Observation,
  type ObservedContainer,
  ONLINE,
  resumeSteps,
  SentryMachine,
  type SentryMachineSettings,
  type Step,
  STRATEGIES,
  type Strategy,
  type Verdict,
  verdictOf,
  WRITE_JOURNAL,
} from "../../lib/network_sentry/machine.ts";

const T0 = Date.parse("2026-11-22T09:00:00Z");
const BOOT = "5f4c1e0a-2b7d-4c1e-9a3f-0d8e6b2c7a91";

/** Wall time `wallMs`, with a boot clock that has run as long since T0 (the machine booted an hour before T0). */
function at(wallMs: number, bootId = BOOT): Moment {
  return { wallMs, bootClock: { bootId, ms: wallMs - T0 + 3_600_000 } };
}
const NO: ObservedContainer["restartPolicy"] = { Name: "no", MaximumRetryCount: 0 };
const ON_FAILURE = { Name: "on-failure", MaximumRetryCount: 0 };
/** The default --cutover-settle. */
const REPLACEMENT_SETTLE_MS = 10_000;

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

function settings(strategy: Strategy, overrides: Partial<SentryMachineSettings> = {}): SentryMachineSettings {
  return { strategy, retries: 0, cutoverTimeoutMs: 300_000, replacementSettleMs: REPLACEMENT_SETTLE_MS, ...overrides };
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

Deno.test("leftovers: unrecorded ECS containers on on-failure, and a paused agent while the journal is online", () => {
  const observation: Observation = {
    agent: agent("paused"),
    containers: [
      container("eins", { restartPolicy: ON_FAILURE }),
      container("ecs"),
      container("operator", { restartPolicy: { Name: "always", MaximumRetryCount: 0 } }),
    ],
  };
  const found = leftoversOf(ONLINE, observation);
  assert.deepEqual(found.containers.map((c) => c.id), ["eins"]);
  assert.equal(found.agentPaused, true);
  const recorded = new SentryMachine(settings("cleanup")).step(at(T0), {
    journal: ONLINE,
    verdict: "down",
    observation,
  });
  const ours = lastJournal(recorded, ONLINE);
  assert.deepEqual(ours.containers.find((c) => c.id === "eins")?.previousPolicy, NO, "recorded as ECS made it");
  assert.equal(ours.agentPausedBefore, false, "beside leftovers the pause is a sentry's");
  assert.deepEqual(leftoversOf(ours, observation), { containers: [], agentPaused: false });
  assert.deepEqual(
    new SentryMachine(settings("cleanup")).step(at(T0), { journal: ONLINE, verdict: "undecided", observation }),
    [],
  );
});

Deno.test("adoption once the region answers: ECS's policy restored, Docker's restarts removed, agent unpaused", () => {
  const observation: Observation = {
    agent: agent("paused"),
    containers: [
      container("kept", { restartPolicy: ON_FAILURE }),
      container("restarted", { restartPolicy: ON_FAILURE, restartCount: 2 }),
    ],
  };
  const steps = new SentryMachine(settings("cleanup")).step(at(T0), { journal: ONLINE, verdict: "up", observation });
  assert.equal(steps[0].title, ADOPT_LEFTOVERS);
  assert.equal(steps[0].journal.agentPausedBefore, false);
  assert.deepEqual(
    steps.flatMap((s) => s.actions).map((a) => [a.kind, a.id, a.kind === "set-policy" ? a.policy.Name : ""]),
    [["set-policy", "kept", "no"], ["remove", "restarted", ""], ["unpause-agent", "agent", ""]],
  );
  assert.deepEqual(steps.at(-1)!.journal, ONLINE);
});

Deno.test("manual: leftovers beside a running agent are adopted without pausing the agent while the region answers", () => {
  const observation: Observation = {
    agent: agent("running"),
    containers: [container("restarted", { restartPolicy: ON_FAILURE, restartCount: 2 })],
  };
  const steps = new SentryMachine(settings("manual")).step(at(T0), { journal: ONLINE, verdict: "up", observation });
  assert.equal(steps[0].title, ADOPT_LEFTOVERS);
  const actions = steps.flatMap((s) => s.actions).map((a) => a.kind);
  assert.ok(!actions.includes("pause-agent"), `a running agent is never paused while ECS answers: ${actions}`);
  assert.notEqual(steps.at(-1)!.journal.mode, "awaiting-resume");
});

Deno.test("a paused agent with no leftover containers is an operator's: kept paused through an outage", () => {
  const observation: Observation = { agent: agent("paused"), containers: [container("a")] };
  assert.deepEqual(
    new SentryMachine(settings("cleanup")).step(at(T0), { journal: ONLINE, verdict: "up", observation }),
    [],
  );
  const steps = new SentryMachine(settings("cleanup")).step(at(T0), { journal: ONLINE, verdict: "down", observation });
  assert.equal(steps.at(-1)!.journal.agentPausedBefore, true);
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
  const steps = new SentryMachine(settings("cleanup", { retries: 5 })).step(at(T0), {
    journal: ONLINE,
    verdict: "down",
    observation,
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
    assert.deepEqual(
      new SentryMachine(settings("cleanup")).step(at(T0), { journal: ONLINE, verdict, observation }),
      [],
    );
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
  const steps = new SentryMachine(settings("cleanup")).step(at(T0 + 60_000), {
    journal,
    verdict: "undecided",
    observation,
  });
  assert.deepEqual(kinds(steps), ["pause-agent:agent", "set-policy:a", "set-policy:new"]);
  const final = lastJournal(steps, journal);
  assert.deepEqual(final.containers.map((c) => c.id), ["a", "new"], "a vanished container leaves the journal");
  assert.equal(final.since, T0, "the outage keeps its start");

  const settled: Observation = {
    agent: agent("paused"),
    containers: [container("a", { restartPolicy: ON_FAILURE }), container("new", { restartPolicy: ON_FAILURE })],
  };
  assert.deepEqual(
    new SentryMachine(settings("cleanup")).step(at(T0), { journal: final, verdict: "down", observation: settled }),
    [],
  );
});

Deno.test("an agent already paused by someone else is neither paused nor unpaused by the sentry", () => {
  const observation: Observation = { agent: agent("paused"), containers: [container("a")] };
  const offline = new SentryMachine(settings("cleanup")).step(at(T0), {
    journal: ONLINE,
    verdict: "down",
    observation,
  });
  assert.deepEqual(kinds(offline), ["set-policy:a"]);
  const journal = lastJournal(offline, ONLINE);
  assert.equal(journal.agentPausedBefore, true);
  const back = new SentryMachine(settings("cleanup")).step(at(T0 + 1000), {
    journal,
    verdict: "up",
    observation: { agent: agent("paused"), containers: [container("a", { restartPolicy: ON_FAILURE })] },
  });
  assert.deepEqual(kinds(back), ["set-policy:a"]);
  assert.equal(lastJournal(back, journal).mode, "online");
});

Deno.test("an agent paused by someone else, then running again after a reboot: the sentry's pause is undone at hand-back", () => {
  const observation: Observation = { agent: agent("paused"), containers: [container("a")] };
  const offline = lastJournal(
    new SentryMachine(settings("preserve")).step(at(T0), { journal: ONLINE, verdict: "down", observation }),
    ONLINE,
  );
  assert.equal(offline.agentPausedBefore, true);
  const afterReboot: Observation = {
    agent: agent("running"),
    containers: [container("a", { restartPolicy: ON_FAILURE, startedAt: "2026-11-22T09:10:00Z" })],
  };
  const steps = new SentryMachine(settings("preserve")).step(at(T0 + 60_000), {
    journal: offline,
    verdict: "undecided",
    observation: afterReboot,
  });
  assert.deepEqual(steps.map((s) => s.title), [WRITE_JOURNAL, "hold the ECS agent paused"]);
  assert.equal(steps[0].journal.agentPausedBefore, false, "journaled before the sentry pauses the agent");
  assert.deepEqual(steps[0].actions, []);
  assert.deepEqual(kinds(steps), ["pause-agent:agent"]);
  const held = lastJournal(steps, offline);
  const back = new SentryMachine(settings("preserve")).step(at(T0 + 120_000), {
    journal: held,
    verdict: "up",
    observation: { ...afterReboot, agent: agent("paused") },
  });
  assert.deepEqual(kinds(back), ["set-policy:a", "unpause-agent:agent"]);
  assert.deepEqual(lastJournal(back, held), ONLINE);
});

Deno.test("a step without Docker calls is not announced under its title: it is a journal write, or nothing", () => {
  // A sentry's leftovers (agent paused, container on on-failure) are already what going offline asks for.
  const observation: Observation = {
    agent: agent("paused"),
    containers: [container("a", { restartPolicy: ON_FAILURE })],
  };
  const steps = new SentryMachine(settings("cleanup")).step(at(T0), { journal: ONLINE, verdict: "down", observation });
  assert.deepEqual(steps.map((s) => [s.title, s.actions.length]), [[WRITE_JOURNAL, 0]]);
  assert.deepEqual(steps[0].journal.containers.map((c) => c.id), ["a"]);
  // And someone already undid them by hand before the region came back.
  const undone: Observation = { agent: agent("running"), containers: [container("a")] };
  const handBack = new SentryMachine(settings("preserve")).step(at(T0 + 1), {
    journal: steps[0].journal,
    verdict: "up",
    observation: undone,
  });
  assert.deepEqual(handBack.map((s) => [s.title, s.actions.length]), [["hand-back complete: clear the journal", 0]]);
  for (const step of [...steps, ...handBack]) {
    assert.ok(step.actions.length > 0 || step.title === WRITE_JOURNAL || step.title.startsWith("hand-back complete"));
  }
});

Deno.test("a container Docker is restarting at hand-back counts as restarted: cleanup removes it", () => {
  const { journal, observation } = outage();
  const restarting: Observation = {
    ...observation,
    containers: observation.containers.map((c) => c.id === "calm" ? { ...c, state: "restarting" } : c),
  };
  const steps = new SentryMachine(settings("cleanup")).step(at(T0 + 1), {
    journal,
    verdict: "up",
    observation: restarting,
  });
  assert.deepEqual(kinds(steps), ["remove:calm", "remove:crash", "remove:reboot", "unpause-agent:agent"]);
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

Deno.test("cleanup: restore the kept, then remove restarted containers, unpause the agent last, clear the journal last", () => {
  const { journal, observation } = outage();
  const steps = new SentryMachine(settings("cleanup")).step(at(T0 + 600_000), { journal, verdict: "up", observation });
  // Kept first: one that crashes during a removal (up to its stop timeout) must not be restarted by Docker.
  assert.deepEqual(kinds(steps), ["set-policy:calm", "remove:crash", "remove:reboot", "unpause-agent:agent"]);
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
  const steps = new SentryMachine(settings("preserve")).step(at(T0 + 1), { journal, verdict: "up", observation });
  assert.deepEqual(kinds(steps), ["set-policy:calm", "set-policy:crash", "set-policy:reboot", "unpause-agent:agent"]);
  assert.deepEqual(steps.at(-1)!.journal, ONLINE);
});

Deno.test("manual: with restarted containers the agent stays paused until resume", () => {
  const { journal, observation } = outage();
  const steps = new SentryMachine(settings("manual")).step(at(T0 + 1), { journal, verdict: "up", observation });
  assert.deepEqual(kinds(steps), ["set-policy:calm", "set-policy:crash", "set-policy:reboot"]);
  const waiting = lastJournal(steps, journal);
  assert.equal(waiting.mode, "awaiting-resume");
  const restored: Observation = {
    ...observation,
    containers: observation.containers.map((c) => ({ ...c, restartPolicy: NO })),
  };
  assert.deepEqual(
    new SentryMachine(settings("manual")).step(at(T0 + 2), { journal: waiting, verdict: "up", observation: restored }),
    [],
  );
  const resumed = resumeSteps(waiting, restored);
  assert.deepEqual(kinds(resumed), ["unpause-agent:agent"]);
  assert.deepEqual(resumed.at(-1)!.journal, ONLINE);
  assert.deepEqual(resumeSteps(ONLINE, restored), [], "resume does nothing unless a hand-back waits");
});

Deno.test("manual: until resume, every probe pauses the agent again after a reboot or dockerd restart", () => {
  const { journal, observation } = outage();
  const waiting = lastJournal(
    new SentryMachine(settings("manual")).step(at(T0 + 1), { journal, verdict: "up", observation }),
    journal,
  );
  assert.equal(waiting.mode, "awaiting-resume");
  const restored = observation.containers.map((c) => ({ ...c, restartPolicy: NO }));
  const rebooted: Observation = { agent: agent("running"), containers: restored };
  const steps = new SentryMachine(settings("manual")).step(at(T0 + 2), {
    journal: waiting,
    verdict: "up",
    observation: rebooted,
  });
  assert.deepEqual(steps.map((s) => s.title), ["keep the ECS agent paused until an operator runs resume"]);
  assert.deepEqual(kinds(steps), ["pause-agent:agent"]);
  assert.equal(lastJournal(steps, waiting), waiting, "still awaiting resume, journal unchanged");

  // Paused by someone else before the outage: once the sentry has paused it, resume unpauses it.
  const pausedBefore: Journal = { ...waiting, agentPausedBefore: true };
  const held = new SentryMachine(settings("manual")).step(at(T0 + 3), {
    journal: pausedBefore,
    verdict: "up",
    observation: rebooted,
  });
  assert.equal(held[0].title, WRITE_JOURNAL);
  assert.equal(held[0].journal.agentPausedBefore, false);
  assert.deepEqual(kinds(held), ["pause-agent:agent"]);
  const resumed = resumeSteps(lastJournal(held, pausedBefore), { agent: agent("paused"), containers: restored });
  assert.deepEqual(kinds(resumed), ["unpause-agent:agent"]);
  assert.deepEqual(kinds(resumeSteps(pausedBefore, { agent: agent("paused"), containers: restored })), []);
});

Deno.test("manual: without restarted containers it hands back at once", () => {
  const { journal, observation } = outage();
  const calmOnly: Journal = { ...journal, containers: journal.containers.filter((c) => c.id === "calm") };
  const steps = new SentryMachine(settings("manual")).step(at(T0 + 1), {
    journal: calmOnly,
    verdict: "up",
    observation,
  });
  assert.deepEqual(kinds(steps), ["set-policy:calm", "unpause-agent:agent"]);
  assert.deepEqual(steps.at(-1)!.journal, ONLINE);
});

Deno.test("cutover: restarted containers go only once their replacement has run 10 s, is healthy, or time is up", () => {
  const { journal, observation } = outage();
  const now = T0 + 600_000;
  const first = new SentryMachine(settings("cutover")).step(at(now), { journal, verdict: "up", observation });
  assert.deepEqual(kinds(first), ["set-policy:calm", "set-policy:crash", "set-policy:reboot", "unpause-agent:agent"]);
  const cutover = lastJournal(first, journal);
  assert.equal(cutover.mode, "cutover");
  const restored = observation.containers.map((c) => ({ ...c, restartPolicy: NO }));
  const iso = (ms: number) => new Date(ms).toISOString();
  const replacement = (id: string, of: string, startedAt: number, health?: string) =>
    container(id, { family: `family-${of}`, containerName: `app-${of}`, startedAt: iso(startedAt), health });
  const step = (containers: ObservedContainer[], when: number) =>
    new SentryMachine(settings("cutover")).step(at(when), {
      journal: cutover,
      verdict: "up",
      observation: { agent: agent(), containers },
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

Deno.test("cutover: --cutover-timeout runs on the boot clock: a wall-clock step moves it not; a reboot counts its boot", () => {
  const now = T0 + 600_000;
  const { cutover, restored } = cutoverFrom(now);
  assert.deepEqual(
    cutover.sinceBootClock,
    at(now).bootClock,
    "the journal keeps when the cutover began on both clocks",
  );
  const step = (when: Moment) =>
    kinds(new SentryMachine(settings("cutover")).step(when, {
      journal: cutover,
      verdict: "up",
      observation: { agent: agent(), containers: restored },
    }));
  const removals = ["remove:crash", "remove:reboot"];
  const fiveSecondsOn = at(now + 5_000).bootClock;
  assert.deepEqual(step({ wallMs: now + 3_600_000, bootClock: fiveSecondsOn }), [], "an hour forward, 5 s later");
  const timedOut = at(now + 300_000).bootClock;
  assert.deepEqual(step({ wallMs: now - 3_300_000, bootClock: timedOut }), removals, "an hour back, 300 s later");
  // After a reboot the time before it is unknown: at least all of this boot has passed.
  const rebooted = (bootMs: number) => ({ wallMs: now + 3_600_000, bootClock: { bootId: "next boot", ms: bootMs } });
  assert.deepEqual(step(rebooted(60_000)), [], "up 60 s after a reboot: the timeout waits on");
  assert.deepEqual(step(rebooted(300_000)), removals, "up 300 s after a reboot");
  // A journal from before the boot clock was kept: the wall clock is all there is.
  const legacy: Journal = { ...cutover, sinceBootClock: undefined };
  const legacyStep = (wallMs: number) =>
    kinds(new SentryMachine(settings("cutover")).step(at(wallMs), {
      journal: legacy,
      verdict: "up",
      observation: { agent: agent(), containers: restored },
    }));
  assert.deepEqual(legacyStep(now + 299_000), []);
  assert.deepEqual(legacyStep(now + 300_000), removals);
});

Deno.test("elapsedSince: exact within a boot, from below across a reboot, from the wall clock without boot readings", () => {
  assert.deepEqual(elapsedSince(at(T0), at(T0 + 5_000)), { atLeastMs: 5_000, atMostMs: 5_000 });
  assert.deepEqual(elapsedSince(at(T0), { wallMs: T0 - 3_600_000, bootClock: at(T0 + 5_000).bootClock }), {
    atLeastMs: 5_000,
    atMostMs: 5_000,
  });
  assert.deepEqual(elapsedSince(at(T0), at(T0 + 5_000, "next boot")), { atLeastMs: 3_605_000, atMostMs: Infinity });
  assert.deepEqual(elapsedSince({ wallMs: T0 }, at(T0 + 5_000)), { atLeastMs: 5_000, atMostMs: Infinity });
  assert.deepEqual(elapsedSince({ wallMs: T0 }, at(T0 - 5_000)), { atLeastMs: 0, atMostMs: Infinity });
});

/** A cutover in progress since `now`, after outage(): every policy restored, the agent running. */
function cutoverFrom(now: number) {
  const { journal, observation } = outage();
  const cutover = lastJournal(
    new SentryMachine(settings("cutover")).step(at(now), { journal, verdict: "up", observation }),
    journal,
  );
  assert.equal(cutover.mode, "cutover");
  const restored = observation.containers.map((c) => ({ ...c, restartPolicy: NO }));
  return { cutover, restored };
}

function replacementOf(id: string, of: string, startedAt: number, health?: string): ObservedContainer {
  return container(id, {
    family: `family-${of}`,
    containerName: `app-${of}`,
    startedAt: new Date(startedAt).toISOString(),
    health,
  });
}

Deno.test("cutover: each replacement stands in for one restarted container, also over later probes", () => {
  const now = T0 + 600_000;
  const { journal, observation } = outage();
  // Two restarted copies of the same task container (say two tasks of one service).
  const twin = { ...journal.containers[1], id: "crash-2", name: "ecs-crash-2" };
  const twins: Journal = { ...journal, containers: [...journal.containers, twin] };
  const twinObserved = { ...observation.containers[1], id: "crash-2", name: "ecs-crash-2" };
  const withTwin: Observation = { ...observation, containers: [...observation.containers, twinObserved] };
  const cutover = lastJournal(
    new SentryMachine(settings("cutover")).step(at(now), { journal: twins, verdict: "up", observation: withTwin }),
    twins,
  );
  const restored = withTwin.containers.map((c) => ({ ...c, restartPolicy: NO }));
  const later = now + 20_000;
  const oneReplacement = [...restored, replacementOf("new-1", "crash", now + 1000)];
  const first = new SentryMachine(settings("cutover")).step(at(later), {
    journal: cutover,
    verdict: "up",
    observation: { agent: agent(), containers: oneReplacement },
  });
  assert.deepEqual(kinds(first), ["remove:crash"], "one replacement, one removal");
  const claimed = lastJournal(first, cutover);
  assert.deepEqual(claimed.claimedReplacements, ["new-1"], "the claim is journaled before the removal");
  assert.equal(first.at(-2)?.title, WRITE_JOURNAL);
  const afterRemoval = oneReplacement.filter((c) => c.id !== "crash");
  const second = new SentryMachine(settings("cutover")).step(at(later + 20_000), {
    journal: claimed,
    verdict: "up",
    observation: { agent: agent(), containers: afterRemoval },
  });
  assert.deepEqual(kinds(second), [], "the same replacement does not count again for crash-2");
  const third = new SentryMachine(settings("cutover")).step(at(later + 20_000), {
    journal: claimed,
    verdict: "up",
    observation: { agent: agent(), containers: [...afterRemoval, replacementOf("new-2", "crash", now + 2000)] },
  });
  assert.deepEqual(kinds(third), ["remove:crash-2"]);
});

Deno.test("cutover: only containers the agent started after the hand-back began are replacements", () => {
  const now = T0 + 600_000;
  const { cutover, restored } = cutoverFrom(now);
  const older = replacementOf("older", "crash", now - 60_000);
  const steps = new SentryMachine(settings("cutover")).step(at(now + 60_000), {
    journal: cutover,
    verdict: "up",
    observation: { agent: agent(), containers: [...restored, older] },
  });
  assert.deepEqual(kinds(steps), [], "a same-named container started before the hand-back is not a replacement");
});

Deno.test("cutover: the region drops again and a later outage records the agent's replacement; it still counts", () => {
  const now = T0 + 600_000;
  const { cutover, restored } = cutoverFrom(now);
  const replacement = replacementOf("new-crash", "crash", now + 2000);
  const down = new SentryMachine(settings("cutover")).step(at(now + 5000), {
    journal: cutover,
    verdict: "down",
    observation: { agent: agent(), containers: [...restored, replacement] },
  });
  const offline = lastJournal(down, cutover);
  assert.equal(offline.mode, "offline");
  assert.ok(offline.containers.some((c) => c.id === "new-crash"), "the replacement is recorded in the new outage");
  assert.equal(offline.handBackStartedAt, now, "the first hand-back's start is kept");
  const onFailure = [...restored, replacement].map((c) => ({ ...c, restartPolicy: ON_FAILURE }));
  const backAt = now + 60_000;
  const back = new SentryMachine(settings("cutover")).step(at(backAt), {
    journal: offline,
    verdict: "up",
    observation: { agent: agent("paused"), containers: onFailure },
  });
  assert.equal(lastJournal(back, offline).mode, "cutover");
  assert.ok(backAt - now < 300_000, "well within --cutover-timeout");
  assert.deepEqual(
    kinds(back).filter((k) => k.startsWith("remove")),
    ["remove:crash"],
    "crash goes at once: its replacement has run for almost a minute; reboot still waits for one",
  );
  assert.ok(kinds(back).includes("set-policy:new-crash"), "the replacement gets its recorded policy back");
});

Deno.test("back offline during a hand-back: what was found restarted stays restarted", () => {
  const { journal, observation } = outage();
  const cutover = lastJournal(
    new SentryMachine(settings("cutover")).step(at(T0 + 1), { journal, verdict: "up", observation }),
    journal,
  );
  const again = new SentryMachine(settings("cutover")).step(at(T0 + 2), {
    journal: cutover,
    verdict: "down",
    observation: {
      agent: agent("running"),
      containers: observation.containers.map((c) => ({ ...c, restartPolicy: NO })),
    },
  });
  const offline = lastJournal(again, cutover);
  assert.equal(offline.mode, "offline");
  assert.equal(offline.strategy, undefined);
  assert.deepEqual(kinds(again), ["pause-agent:agent", "set-policy:calm", "set-policy:crash", "set-policy:reboot"]);
  const settledObservation: Observation = {
    agent: agent("paused"),
    containers: observation.containers.map((c) => ({ ...c, restartCount: 0, startedAt: "2026-11-22T08:00:00Z" })),
  };
  const handBack = new SentryMachine(settings("cleanup")).step(at(T0 + 3), {
    journal: offline,
    verdict: "up",
    observation: settledObservation,
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

/** A probe every 20 s from `start`. */
const ticks = (start: number) => (round: number) => start + round * 20_000;

/**
 * Runs plans to a fixed point; `crashAt` stops the first run after that step's journal is written and
 * (with `partial`) half its actions ran. Returns the last journal written and every action applied.
 */
function drive(
  world: World,
  journal: Journal,
  verdict: Verdict,
  planSettings: SentryMachineSettings,
  clock: (round: number) => number,
  crashAt?: { step: number; partial: boolean },
): { journal: Journal; applied: Action[] } {
  let saved = journal;
  const applied: Action[] = [];
  for (let round = 0; round < 10; round++) {
    const steps = new SentryMachine(planSettings).step(at(clock(round)), {
      journal: saved,
      verdict,
      observation: observe(world),
    });
    if (steps.length === 0) return { journal: saved, applied };
    for (const [index, step] of steps.entries()) {
      saved = step.journal;
      const crashing = round === 0 && crashAt?.step === index;
      const actions = crashing && crashAt.partial
        ? step.actions.slice(0, Math.ceil(step.actions.length / 2))
        : step.actions;
      actions.forEach((action) => apply(world, action));
      applied.push(...actions);
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

/** How cutover converges: by --cutover-timeout (none is set up), or through the agent's replacements. */
type Ending = "timeout" | "replacements";

const HAND_BACK_AT = T0 + 3_600_000;

/** Offline (crashing at `offlineCrash`), then Docker restarts two containers; the agent's replacements if asked. */
function outageThenRestarts(
  strategy: Strategy,
  ending: Ending,
  offlineCrash: { step: number; partial: boolean } | undefined,
): { world: World; journal: Journal } {
  const world = outageWorld();
  const { journal } = drive(world, ONLINE, "down", settings(strategy), ticks(T0), offlineCrash);
  assert.equal(world.agent, "paused");
  assert.equal(journal.mode, "offline");
  for (const c of world.containers.values()) {
    if (c.state === "running") assert.deepEqual(c.restartPolicy, ON_FAILURE, `${c.id} kept alive`);
  }
  const crash = world.containers.get("crash")!;
  world.containers.set("crash", { ...crash, restartCount: 2 });
  const reboot = world.containers.get("reboot")!;
  world.containers.set("reboot", { ...reboot, startedAt: "2026-11-22T09:30:00Z" });
  if (ending === "replacements") {
    for (const  of of["crash", "reboot"]) {
      world.containers.set(`new-${of}`, replacementOf(`new-${of}`, of, HAND_BACK_AT));
    }
  }
  return { world, journal };
}

function onlineSettings(strategy: Strategy, ending: Ending): SentryMachineSettings {
  return settings(strategy, { cutoverTimeoutMs: ending === "timeout" ? 0 : 3_600_000 });
}

const SCENARIOS: Array<[Strategy, Ending]> = [
  ...STRATEGIES.map((strategy): [Strategy, Ending] => [strategy, "timeout"]),
  ["cutover", "replacements"],
];

for (const [strategy, ending] of SCENARIOS) {
  const name = strategy === "cutover" ? `cutover (by ${ending})` : strategy;
  Deno.test(`${name}: a crash at any step of either transition converges after a restart`, () => {
    // Every step of each transition is a crash point, plus one past the last (no crash).
    const offlineSteps = new SentryMachine(settings(strategy)).step(at(T0), {
      journal: ONLINE,
      verdict: "down",
      observation: observe(outageWorld()),
    }).length;
    const reference = outageThenRestarts(strategy, ending, undefined);
    const onlineSteps = new SentryMachine(onlineSettings(strategy, ending)).step(at(HAND_BACK_AT), {
      journal: reference.journal,
      verdict: "up",
      observation: observe(reference.world),
    }).length;
    assert.ok(offlineSteps >= 4 && onlineSteps >= 3, `${offlineSteps} offline and ${onlineSteps} online steps`);
    for (let offlineCrash = 0; offlineCrash <= offlineSteps; offlineCrash++) {
      for (let onlineCrash = 0; onlineCrash <= onlineSteps; onlineCrash++) {
        for (const partial of [false, true]) {
          const where = `${name}, offline crash ${offlineCrash}, online crash ${onlineCrash}, partial ${partial}`;
          const { world, journal } = outageThenRestarts(strategy, ending, { step: offlineCrash, partial });
          const online = drive(world, journal, "up", onlineSettings(strategy, ending), ticks(HAND_BACK_AT), {
            step: onlineCrash,
            partial,
          });
          for (const c of world.containers.values()) {
            assert.notEqual(c.restartPolicy.Name, "on-failure", `${where}: ${c.id} left on on-failure`);
          }
          assert.ok(world.containers.has("calm"), `${where}: a container that never restarted was removed`);
          assert.ok(world.containers.has("unrecorded-exited"), `${where}: an unmanaged container was removed`);
          if (strategy === "manual") {
            assert.equal(online.journal.mode, "awaiting-resume", where);
            assert.equal(world.agent, "paused", where);
          } else {
            assert.deepEqual(online.journal, ONLINE, where);
            assert.equal(world.agent, "running", `${where}: agent left paused`);
          }
          const restartedLeft = ["crash", "reboot"].filter((id) => world.containers.has(id));
          assert.deepEqual(
            restartedLeft,
            strategy === "cleanup" || strategy === "cutover" ? [] : ["crash", "reboot"],
            where,
          );
          if (ending === "replacements") {
            assert.ok(world.containers.has("new-crash") && world.containers.has("new-reboot"), where);
            const reasons = online.applied.flatMap((a) => a.kind === "remove" ? [a.why] : []);
            assert.deepEqual(reasons.sort(), [
              "the agent's replacement ecs-new-crash runs",
              "the agent's replacement ecs-new-reboot runs",
            ], where);
          }
        }
      }
    }
  });
}
