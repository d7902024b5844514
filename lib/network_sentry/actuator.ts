/**
 * Carries out planned steps: writes each step's journal, then runs its Docker calls with bounded
 * parallelism. A failed call ends the run (later steps, such as unpausing the agent, must not overtake
 * it) and is retried from a fresh plan on the next probe; a container that vanished is skipped.
 * @module
 */
import type { Logger } from "../log.ts";
import { type DockerHost, errorFields, isVanished } from "./docker.ts";
import { type JournalStore, JournalWriteError } from "./journal.ts";
import type { Action, Journal, LogTag, Step } from "./machine.ts";
import { DOCKER_PARALLELISM, mapBounded } from "./parallel.ts";

export type DockerActions = Pick<DockerHost, "pause" | "unpause" | "setRestartPolicy" | "stopAndRemove">;

export interface Actuator {
  readonly docker: DockerActions;
  readonly journal: JournalStore;
  readonly log: Logger;
  /** Log what would be done instead of doing it. */
  readonly dryRun: boolean;
  readonly signal?: AbortSignal;
}

export interface StepsOutcome {
  /** The journal as last saved. */
  readonly journal: Journal;
  /** Every step ran to the end. */
  readonly finished: boolean;
  readonly failedCalls: number;
}

/** Runs `steps` in order; `saved` is the journal currently on disk (not rewritten when unchanged). */
export async function runSteps(steps: readonly Step[], saved: Journal, actuator: Actuator): Promise<StepsOutcome> {
  let journal = saved;
  for (const step of steps) {
    if (actuator.signal?.aborted) return { journal, finished: false, failedCalls: 0 };
    actuator.log.info(`[${step.logTag}] step: {step}`, { step: step.title, actions: step.actions.length });
    if (JSON.stringify(step.journal) !== JSON.stringify(journal)) {
      await saveOrCarryOn(step.journal, actuator);
      journal = step.journal;
    }
    const results = await mapBounded(
      step.actions,
      DOCKER_PARALLELISM,
      (action) => perform(action, step.logTag, actuator),
    );
    const failedCalls = results.filter((ok) => !ok).length;
    if (failedCalls > 0 || actuator.signal?.aborted) return { journal, finished: false, failedCalls };
  }
  return { journal, finished: true, failedCalls: 0 };
}

/**
 * Writes a step's journal. A write that fails (full disk) is logged with the path and the step runs all
 * the same: protecting the host from what the sentry holds in memory is never worse than having no
 * journal, and the store writes it again on a later probe.
 */
export async function saveOrCarryOn(journal: Journal, actuator: Actuator): Promise<boolean> {
  try {
    await actuator.journal.save(journal);
    return true;
  } catch (error) {
    if (!(error instanceof JournalWriteError)) throw error;
    actuator.log.error(`[journal] cannot write {path}, carrying on from memory and retrying every probe: {detail}`, {
      path: error.path,
      ...errorFields(error.cause),
    });
    return false;
  }
}

/** One Docker call, logged the way eINS logged it; `false` when it failed (vanished containers are fine). */
async function perform(action: Action, tag: LogTag, actuator: Actuator): Promise<boolean> {
  const { log } = actuator;
  const fields = action.kind === "set-policy" || action.kind === "remove"
    ? { container: action.name, cluster: action.cluster, id: action.id }
    : { container: action.name, id: action.id };
  const [done, call] = describe(action, actuator.docker);
  if (actuator.dryRun) {
    log.info(`[${tag}] dry run, would do: ${done}`, { ...fields, ...details(action) });
    return true;
  }
  try {
    await call();
    log.info(`[${tag}] ${done}`, { ...fields, ...details(action) });
    return true;
  } catch (error) {
    if (actuator.signal?.aborted) {
      log.warning(`[${tag}] interrupted by shutdown: ${done}`, fields);
      return false;
    }
    if (isVanished(error)) {
      log.info(`[${tag}] container vanished, skipped: ${done}`, fields);
      return true;
    }
    log.error(`[${tag}] docker error, retried on the next probe: {detail}`, {
      ...fields,
      action: action.kind,
      ...errorFields(error),
    });
    return false;
  }
}

/** The eINS log wording of an action, and the call that does it. */
function describe(action: Action, docker: DockerActions): [string, () => Promise<void>] {
  switch (action.kind) {
    case "pause-agent":
      return ["ecs agent paused..", () => docker.pause(action.id)];
    case "unpause-agent":
      return ["ecs agent unpaused..", () => docker.unpause(action.id)];
    case "set-policy":
      // `{policy}` is filled from the log record's fields (LogTape templates), not pasted in.
      return ["set container restart policy: {policy}", () => docker.setRestartPolicy(action.id, action.policy)];
    case "remove":
      return ["container has been restarted by docker, stopping & removing..", () => docker.stopAndRemove(action.id)];
  }
}

function details(action: Action): Record<string, unknown> {
  return action.kind === "remove" ? { why: action.why } : action.kind === "set-policy" ? { policy: action.policy } : {};
}
