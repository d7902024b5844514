/**
 * The sentry's decisions, free of I/O: probe results become a verdict through the thresholds, and the
 * journal plus what Docker shows become an ordered list of steps. Each step carries the journal to
 * write before its actions run, so a process killed at any point resumes from a journal that already
 * names what it was about to do. Every plan is computed from what Docker shows now, which makes
 * replaying a step after a crash harmless.
 * @module
 */

/** What happens, once online, to containers Docker restarted during the outage (`--restart-strategy`). */
export const STRATEGIES = ["cleanup", "preserve", "manual", "cutover"] as const;
export type Strategy = typeof STRATEGIES[number];

export interface RestartPolicy {
  readonly Name: string;
  readonly MaximumRetryCount: number;
}

/** A container as Docker shows it; only ECS-labelled ones (and the agent) are observed. */
export interface ObservedContainer {
  readonly id: string;
  readonly name: string;
  /** Docker's `State.Status`: running, paused, restarting, exited, created, dead, removing. */
  readonly state: string;
  readonly cluster: string;
  readonly taskArn: string;
  readonly family: string;
  readonly containerName: string;
  readonly restartCount: number;
  readonly restartPolicy: RestartPolicy;
  /** `State.StartedAt`; a daemon restart restarts containers without counting it in RestartCount. */
  readonly startedAt: string;
  /** `State.Health.Status` when the container has a health check. */
  readonly health?: string;
  /**
   * Logs go through Docker's awslogs driver in blocking mode (no `mode: non-blocking`): Docker cannot
   * start the container while CloudWatch Logs is unreachable and fails it with exit 128, so no restart
   * policy keeps it alive offline.
   */
  readonly awslogsBlocking?: boolean;
}

export interface AgentContainer {
  readonly id: string;
  readonly name: string;
  readonly state: string;
}

export interface Observation {
  /** `undefined` when no container has the agent's name. */
  readonly agent?: AgentContainer;
  /** ECS-labelled containers, the agent excluded, in any state. */
  readonly containers: readonly ObservedContainer[];
}

/** What the sentry recorded about a container before changing its restart policy. */
export interface ManagedContainer {
  readonly id: string;
  readonly name: string;
  readonly cluster: string;
  readonly taskArn: string;
  readonly family: string;
  readonly containerName: string;
  readonly previousPolicy: RestartPolicy;
  readonly restartCount: number;
  readonly startedAt: string;
  /** Decided once when the hand-back begins: Docker restarted it during the outage. */
  readonly restarted?: boolean;
}

/**
 * - `online`: nothing of ours is in effect.
 * - `offline`: the agent is held paused and the recorded containers are on `on-failure`.
 * - `handing-back`: restoring after an outage (cleanup, preserve, manual).
 * - `cutover`: policies restored and agent running; restarted containers wait for their replacements.
 * - `awaiting-resume`: manual strategy, restarted containers found: the agent stays paused until `resume`.
 */
export const MODES = ["online", "offline", "handing-back", "cutover", "awaiting-resume"] as const;
export type Mode = typeof MODES[number];

export interface Journal {
  readonly version: 1;
  readonly mode: Mode;
  /** When the current mode began (ms since the epoch): for people, and Docker's own timestamps. */
  readonly since?: number;
  /**
   * When the current mode began on the boot clock: what time has passed since is measured on it, so
   * that a wall-clock step moves no timeout. Absent in journals written before it was kept.
   */
  readonly sinceBootClock?: BootClockReading;
  /** The strategy of the hand-back in progress, fixed when it begins so a restart finishes it the same way. */
  readonly strategy?: Strategy;
  /**
   * Someone else had paused the agent when the outage began, and the sentry has not paused it since: the
   * hand-back leaves it paused. Cleared (journaled before the call) once the sentry pauses the agent itself,
   * for instance after a reboot brought it back running; from then on the pause is the sentry's to undo.
   */
  readonly agentPausedBefore?: boolean;
  /**
   * When the first hand-back since the host went offline began; kept if the region drops again meanwhile.
   * cutover: containers the agent started since then are replacements, even once a later outage recorded them.
   */
  readonly handBackStartedAt?: number;
  /** cutover: replacements already matched to a removed restarted container, so that each stands in for one. */
  readonly claimedReplacements?: readonly string[];
  readonly containers: readonly ManagedContainer[];
  /** Who wrote the journal (stamped by the store): a journal from elsewhere must not unpause this host's agent. */
  readonly host?: string;
  readonly agentContainer?: string;
}

export const ONLINE: Journal = { version: 1, mode: "online", containers: [] };

export type Action =
  | { readonly kind: "pause-agent"; readonly id: string; readonly name: string }
  | { readonly kind: "unpause-agent"; readonly id: string; readonly name: string }
  | {
    readonly kind: "set-policy";
    readonly id: string;
    readonly name: string;
    readonly cluster: string;
    readonly policy: RestartPolicy;
  }
  | {
    readonly kind: "remove";
    readonly id: string;
    readonly name: string;
    readonly cluster: string;
    readonly why: string;
  };

/** The tag a step's log lines carry, as eINS tagged them: `[ecs-offline]`, `[ecs-online]`. */
export type LogTag = "ecs-offline" | "ecs-online";

export interface Step {
  readonly logTag: LogTag;
  /** What the step does, logged before it starts. */
  readonly title: string;
  /** Written (atomically) before any action of the step runs. */
  readonly journal: Journal;
  readonly actions: readonly Action[];
}

// --- time ---

/**
 * A reading of the boot clock (milliseconds since boot, which a wall-clock step does not move) with the
 * kernel's id of that boot: two readings are comparable only within one boot.
 */
export interface BootClockReading {
  readonly bootId: string;
  readonly ms: number;
}

/** The time as the sentry's decisions take it and its journal keeps it. */
export interface Moment {
  /** Ms since the epoch: for people, and the clock Docker's timestamps (`StartedAt`) are on. */
  readonly wallMs: number;
  /** `undefined` where the boot clock cannot be read: times passed then fall back to the wall clock. */
  readonly bootClock?: BootClockReading;
}

/** How long ago something was, as far as the clocks can tell: at least, and at most. */
export interface Elapsed {
  readonly atLeastMs: number;
  readonly atMostMs: number;
}

/**
 * The time passed from `then` to `now`. Within one boot, the boot clock's difference, exactly. Across a
 * reboot, at least all of the current boot (`now`'s boot-clock reading), with no upper bound. Where either
 * has no boot-clock reading (a journal or status file from before they were kept), the wall clock's
 * difference as a lower estimate, which a step can move, and no upper bound.
 */
export function elapsedSince(then: Moment, now: Moment): Elapsed {
  const [before, after] = [then.bootClock, now.bootClock];
  if (before !== undefined && after !== undefined) {
    if (before.bootId !== after.bootId) return { atLeastMs: after.ms, atMostMs: Infinity };
    const ms = Math.max(0, after.ms - before.ms);
    return { atLeastMs: ms, atMostMs: ms };
  }
  return { atLeastMs: Math.max(0, now.wallMs - then.wallMs), atMostMs: Infinity };
}

/** The journal's record of a mode beginning `now`. */
function began(now: Moment): Pick<Journal, "since" | "sinceBootClock"> {
  return { since: now.wallMs, sinceBootClock: now.bootClock };
}

/** When the journal's current mode began, as a {@link Moment}. */
function modeBegan(journal: Journal, now: Moment): Moment {
  return journal.since === undefined ? now : { wallMs: journal.since, bootClock: journal.sinceBootClock };
}

// --- probes and thresholds ---

export interface ProbeCounters {
  readonly consecutiveFailures: number;
  readonly consecutiveSuccesses: number;
}

export const NO_PROBES: ProbeCounters = { consecutiveFailures: 0, consecutiveSuccesses: 0 };

export function countProbe(counters: ProbeCounters, reachable: boolean): ProbeCounters {
  return reachable
    ? { consecutiveFailures: 0, consecutiveSuccesses: counters.consecutiveSuccesses + 1 }
    : { consecutiveFailures: counters.consecutiveFailures + 1, consecutiveSuccesses: 0 };
}

/** `down`/`up` once a threshold of consecutive probes is reached; `undecided` while a streak is shorter. */
export type Verdict = "down" | "up" | "undecided";

export interface Thresholds {
  readonly failureThreshold: number;
  readonly recoveryThreshold: number;
}

export function verdictOf(counters: ProbeCounters, thresholds: Thresholds): Verdict {
  if (counters.consecutiveFailures >= thresholds.failureThreshold) return "down";
  if (counters.consecutiveSuccesses >= thresholds.recoveryThreshold) return "up";
  return "undecided";
}

// --- leftovers: changes that no journal accounts for ---

/** The restart policy ECS gives every task container: the agent, not Docker, restarts them. */
export const ECS_POLICY: RestartPolicy = { Name: "no", MaximumRetryCount: 0 };

/**
 * What a sentry left on the host without a journal saying so: eINS stopped mid-outage (it keeps no
 * journal), or a journal that was deleted. ECS creates task containers with restart policy `no`, so an
 * ECS container on `on-failure` that the journal does not record is a sentry's change. A paused agent
 * alone is not evidence: an operator may have paused it on purpose, and it is only adopted together with
 * such containers.
 */
export interface Leftovers {
  /** ECS containers on `on-failure` that the journal does not record. */
  readonly containers: readonly ObservedContainer[];
  /** The agent is paused while the journal is online (holds no pause of ours). */
  readonly agentPaused: boolean;
}

export function leftoversOf(journal: Journal, observation: Observation): Leftovers {
  const recorded = new Set(journal.containers.map((c) => c.id));
  return {
    containers: observation.containers.filter((c) => isLeftover(c) && !recorded.has(c.id)),
    agentPaused: journal.mode === "online" && observation.agent?.state === "paused",
  };
}

function isLeftover(container: ObservedContainer): boolean {
  return container.restartPolicy.Name === "on-failure";
}

/** The title of the step that takes leftovers into the journal, ahead of their hand-back. */
export const ADOPT_LEFTOVERS = "adopt what eINS or a lost journal left: record it for the hand-back";

// --- the machine ---

export interface SentryMachineSettings {
  readonly strategy: Strategy;
  /** `MaximumRetryCount` of the `on-failure` policy set while offline (0 = unlimited). */
  readonly retries: number;
  readonly cutoverTimeoutMs: number;
  /** cutover: a replacement counts once it has run this long (or reports healthy). */
  readonly replacementSettleMs: number;
}

/** What the sentry reads each tick: its journal, the probes' verdict, and what Docker shows. */
export interface Reading {
  readonly journal: Journal;
  readonly verdict: Verdict;
  readonly observation: Observation;
}

/**
 * The sentry's decisions, driven like the other roles' machines: `step(now, reading)`, time first. Unlike
 * theirs, `now` is a {@link Moment}, both clocks: the journal keeps it across restarts and reboots, times
 * passed are measured on the boot clock (see {@link elapsedSince}), and Docker's `StartedAt` can only be
 * compared with the wall clock. The machine holds only its settings; the
 * journal it is given is all it remembers, so a restarted process decides exactly as the one before would have.
 */
export class SentryMachine {
  constructor(readonly settings: SentryMachineSettings) {}

  /** The ordered steps that move Docker and the journal towards what the verdict asks for. */
  step(now: Moment, reading: Reading): Step[] {
    return planTick({ ...reading, settings: this.settings, now });
  }
}

/** One tick's reading with the settings and the time: what every planning function below works from. */
interface Tick extends Reading {
  readonly settings: SentryMachineSettings;
  readonly now: Moment;
}

function planTick(input: Tick): Step[] {
  const { journal, verdict, observation, now } = input;
  const current = keepObserved(journal, observation);
  if (current.mode === "online") {
    const leftovers = leftoversOf(current, observation);
    if (verdict === "up" && leftovers.containers.length > 0) return adoptionSteps(leftovers, input);
    if (verdict !== "down") return [];
    // A paused agent beside leftover containers was paused by a sentry: the pause is ours to undo.
    const agentPausedBefore = leftovers.agentPaused && leftovers.containers.length === 0;
    return offlineSteps({ version: 1, mode: "offline", ...began(now), agentPausedBefore, containers: [] }, input);
  }
  if (current.mode === "offline") {
    return verdict === "up" ? handBackSteps(beginHandBack(current, input), input) : offlineSteps(current, input);
  }
  if (verdict === "down") {
    // Back offline in the middle of a hand-back: what was recorded (and found restarted) stays recorded.
    return offlineSteps({ ...current, mode: "offline", ...began(now), strategy: undefined }, input);
  }
  return handBackSteps(current, input);
}

/** The policy the sentry sets while offline. */
export function offlinePolicy(retries: number): RestartPolicy {
  return { Name: "on-failure", MaximumRetryCount: retries };
}

/**
 * Docker restarted the container since it was recorded: by its restart policy, or when the daemon came
 * back. `restarting` counts too: it exited during the outage and Docker has a restart scheduled, which
 * restoring its policy would not cancel (RestartCount grows only once that restart happens).
 */
export function wasRestarted(recorded: ManagedContainer, observed: ObservedContainer): boolean {
  return observed.state === "restarting" || observed.restartCount > recorded.restartCount ||
    observed.startedAt !== recorded.startedAt;
}

function keepObserved(journal: Journal, observation: Observation): Journal {
  const present = new Set(observation.containers.map((c) => c.id));
  const containers = journal.containers.filter((c) => present.has(c.id));
  return containers.length === journal.containers.length ? journal : { ...journal, containers };
}

function observedById(observation: Observation): Map<string, ObservedContainer> {
  return new Map(observation.containers.map((c) => [c.id, c]));
}

function samePolicy(a: RestartPolicy, b: RestartPolicy): boolean {
  return a.Name === b.Name && (a.Name !== "on-failure" || a.MaximumRetryCount === b.MaximumRetryCount);
}

/** The title of a step that only writes the journal ahead of the steps that act on it. */
export const WRITE_JOURNAL = "write the journal";

/**
 * Steps in order. A journal that changes is written in a step of its own (logged, and a point a crash can
 * fall on) before the Docker calls that follow it; a step is announced under its title only when it makes
 * Docker calls.
 */
class StepList {
  readonly steps: Step[] = [];
  #journal: Journal;

  constructor(readonly logTag: LogTag, journal: Journal) {
    this.#journal = journal;
  }

  /** Docker calls, after `journal` is written if it differs from the last one written. */
  add(title: string, journal: Journal, actions: readonly Action[]): void {
    if (journal !== this.#journal) this.#write(WRITE_JOURNAL, journal);
    if (actions.length > 0) this.steps.push({ logTag: this.logTag, title, journal, actions });
  }

  /** A journal write that is a milestone of its own, announced under `title`. */
  record(title: string, journal: Journal): void {
    this.#write(title, journal);
  }

  #write(title: string, journal: Journal): void {
    // A write that directly follows another makes it redundant: the later journal says all it said.
    if (this.steps.at(-1)?.title === WRITE_JOURNAL) this.steps.pop();
    this.steps.push({ logTag: this.logTag, title, journal, actions: [] });
    this.#journal = journal;
  }
}

/** Pauses the agent when it runs; the sentry pausing it itself means the pause is the sentry's to undo. */
function holdAgentPaused(journal: Journal, observation: Observation): [Journal, Action[]] {
  const agent = observation.agent;
  if (agent?.state !== "running") return [journal, []];
  const held = journal.agentPausedBefore ? { ...journal, agentPausedBefore: false } : journal;
  return [held, [{ kind: "pause-agent", id: agent.id, name: agent.name }]];
}

function offlineSteps(journal: Journal, input: Tick): Step[] {
  const { observation, settings } = input;
  const steps = new StepList("ecs-offline", input.journal);
  const [held, pause] = holdAgentPaused(journal, observation);
  steps.add("hold the ECS agent paused", held, pause);
  const recorded = new Set(held.containers.map((c) => c.id));
  // Leftovers in any state: one that is down now would otherwise stay on on-failure after the hand-back.
  const newcomers: ManagedContainer[] = observation.containers
    .filter((c) => (c.state === "running" || isLeftover(c)) && !recorded.has(c.id))
    .map(managed);
  const withNewcomers: Journal = newcomers.length > 0
    ? { ...held, containers: [...held.containers, ...newcomers] }
    : held;
  const target = offlinePolicy(settings.retries);
  const observed = observedById(observation);
  const policies: Action[] = withNewcomers.containers
    .filter((c) => !samePolicy(observed.get(c.id)!.restartPolicy, target))
    .map((c) => ({ kind: "set-policy", id: c.id, name: c.name, cluster: c.cluster, policy: target }));
  steps.add("keep ECS containers alive with an on-failure restart policy", withNewcomers, policies);
  return steps.steps;
}

/**
 * The container as recorded before the sentry changes it. A leftover is recorded with the policy ECS gave
 * it, and as restarted when Docker restarted it since it was created (RestartCount > 0; under ECS's `no`
 * only a sentry's policy can have done that), which is also how eINS told restarted containers apart.
 */
function managed(c: ObservedContainer): ManagedContainer {
  const leftover = isLeftover(c);
  return {
    id: c.id,
    name: c.name,
    cluster: c.cluster,
    taskArn: c.taskArn,
    family: c.family,
    containerName: c.containerName,
    previousPolicy: leftover ? ECS_POLICY : c.restartPolicy,
    restartCount: c.restartCount,
    startedAt: c.startedAt,
    ...(leftover && (c.restartCount > 0 || c.state === "restarting") ? { restarted: true } : {}),
  };
}

/**
 * Leftovers found while the region answers: recorded, then handed back with the configured strategy as
 * if the sentry had made them (agent included when paused: beside leftover containers it is a sentry's pause).
 */
function adoptionSteps(leftovers: Leftovers, input: Tick): Step[] {
  const { now, settings } = input;
  // manual waits for `resume` with the agent paused; with the agent already running and ECS answering,
  // pausing it would take a working host from ECS: its leftovers are kept as preserve keeps them.
  const strategy = settings.strategy === "manual" && !leftovers.agentPaused ? "preserve" : settings.strategy;
  const adopted: Journal = {
    version: 1,
    mode: strategy === "cutover" ? "cutover" : "handing-back",
    ...began(now),
    strategy,
    agentPausedBefore: false,
    handBackStartedAt: now.wallMs,
    containers: leftovers.containers.map(managed),
  };
  const steps = new StepList("ecs-online", input.journal);
  steps.record(ADOPT_LEFTOVERS, adopted);
  return [...steps.steps, ...handBackSteps(adopted, { ...input, journal: adopted })];
}

function beginHandBack(journal: Journal, input: Tick): Journal {
  const observed = observedById(input.observation);
  const strategy = input.settings.strategy;
  return {
    ...journal,
    mode: strategy === "cutover" ? "cutover" : "handing-back",
    ...began(input.now),
    strategy,
    handBackStartedAt: journal.handBackStartedAt ?? input.now.wallMs,
    containers: journal.containers.map((c) => ({
      ...c,
      restarted: c.restarted === true || wasRestarted(c, observed.get(c.id)!),
    })),
  };
}

function handBackSteps(journal: Journal, input: Tick): Step[] {
  const { observation, now, settings } = input;
  const observed = observedById(observation);
  const restarted = journal.containers.filter((c) => c.restarted);
  const kept = journal.containers.filter((c) => !c.restarted);
  const restore = (containers: readonly ManagedContainer[]): Action[] =>
    containers
      .filter((c) => !samePolicy(observed.get(c.id)!.restartPolicy, c.previousPolicy))
      .map((c) => ({ kind: "set-policy", id: c.id, name: c.name, cluster: c.cluster, policy: c.previousPolicy }));
  const steps = new StepList("ecs-online", input.journal);
  const complete = () => steps.record(HAND_BACK_COMPLETE, ONLINE);
  switch (journal.strategy ?? settings.strategy) {
    case "cleanup":
      // Kept containers first: one that crashes while a restarted one is being stopped (up to its stop
      // timeout, 30 s by default in ECS) then stays down for the agent instead of being restarted by Docker.
      steps.add("restore the recorded restart policies", journal, restore(kept));
      steps.add(
        "stop and remove containers Docker restarted during the outage",
        journal,
        restarted.map((c) => removal(c, "restarted by Docker during the outage")),
      );
      steps.add("unpause the ECS agent", journal, unpause(journal, observation));
      complete();
      break;
    case "preserve":
      steps.add("restore the recorded restart policies", journal, restore(journal.containers));
      steps.add("unpause the ECS agent", journal, unpause(journal, observation));
      complete();
      break;
    case "manual": {
      steps.add("restore the recorded restart policies", journal, restore(journal.containers));
      if (journal.mode !== "awaiting-resume" && restarted.length === 0) {
        steps.add("unpause the ECS agent", journal, unpause(journal, observation));
        complete();
        break;
      }
      // Re-asserted on every probe until `resume`: a reboot or a dockerd restart brings the agent back running.
      const waiting: Journal = journal.mode === "awaiting-resume"
        ? journal
        : { ...journal, mode: "awaiting-resume", ...began(now) };
      const [held, pause] = holdAgentPaused(waiting, observation);
      steps.add("keep the ECS agent paused until an operator runs resume", held, pause);
      break;
    }
    case "cutover": {
      steps.add("restore the recorded restart policies", journal, restore(journal.containers));
      steps.add("unpause the ECS agent", journal, unpause(journal, observation));
      if (elapsedSince(modeBegan(journal, now), now).atLeastMs >= settings.cutoverTimeoutMs) {
        steps.add(
          "remove restarted containers: --cutover-timeout passed",
          journal,
          restarted.map((c) => removal(c, "cutover timeout passed")),
        );
        complete();
        break;
      }
      const pairs = replacementsOf(restarted, journal, observation, settings, now);
      const claimed: Journal = pairs.length === 0 ? journal : {
        ...journal,
        claimedReplacements: [...(journal.claimedReplacements ?? []), ...pairs.map(([, by]) => by.id)],
      };
      steps.add(
        "remove restarted containers whose replacement runs",
        claimed,
        pairs.map(([c, by]) => removal(c, `the agent's replacement ${by.name} runs`)),
      );
      if (pairs.length === restarted.length) complete();
      break;
    }
  }
  return steps.steps;
}

/** The title of the hand-back's last step. */
export const HAND_BACK_COMPLETE = "hand-back complete: clear the journal";

/** `resume` (manual strategy): the operator has looked at the restarted containers; hand the agent back. */
export function resumeSteps(journal: Journal, observation: Observation): Step[] {
  if (journal.mode !== "awaiting-resume") return [];
  const steps = new StepList("ecs-online", journal);
  steps.add("resume: unpause the ECS agent", journal, unpause(journal, observation));
  steps.record(HAND_BACK_COMPLETE, ONLINE);
  return steps.steps;
}

function removal(c: ManagedContainer, why: string): Action {
  return { kind: "remove", id: c.id, name: c.name, cluster: c.cluster, why };
}

function unpause(journal: Journal, observation: Observation): Action[] {
  const agent = observation.agent;
  if (agent === undefined || agent.state !== "paused" || journal.agentPausedBefore) return [];
  return [{ kind: "unpause-agent", id: agent.id, name: agent.name }];
}

/**
 * Restarted containers paired one to one with the agent's replacements. A replacement runs, has the same
 * task family and container name, was started after the hand-back began (recorded originals were not),
 * was not itself restarted by Docker, stands in for no other container yet, and has run
 * `replacementSettleMs` or reports healthy.
 */
function replacementsOf(
  restarted: readonly ManagedContainer[],
  journal: Journal,
  observation: Observation,
  settings: SentryMachineSettings,
  now: Moment,
): Array<[ManagedContainer, ObservedContainer]> {
  // Docker gives a container's start only on the wall clock: these two comparisons are on it too.
  // `since` stands in for a journal written before the hand-back's start was kept.
  const handBackBegan = journal.handBackStartedAt ?? journal.since ?? now.wallMs;
  const taken = new Set([...restarted.map((c) => c.id), ...(journal.claimedReplacements ?? [])]);
  const candidates = observation.containers.filter((c) => {
    const started = Date.parse(c.startedAt);
    return c.state === "running" && !taken.has(c.id) && started >= handBackBegan &&
      (c.health === "healthy" || now.wallMs - started >= settings.replacementSettleMs);
  });
  const pairs: Array<[ManagedContainer, ObservedContainer]> = [];
  for (const original of restarted) {
    const by = candidates.find((c) =>
      !taken.has(c.id) && c.family === original.family && c.containerName === original.containerName
    );
    if (by === undefined) continue;
    taken.add(by.id);
    pairs.push([original, by]);
  }
  return pairs;
}
