/**
 * What the sidecar's own container definition does to its one job, ending the task early: pure rules over
 * what task metadata and (where ecs:DescribeTaskDefinition is allowed) the task definition say. A leaf of
 * the import graph.
 *
 * Facts designed by:
 * - ECS restarts a container whose restart policy is enabled when it exits, "unless" its exit code is in
 *   `ignoredExitCodes` ("By default, Amazon ECS does not ignore any exit codes", API_ContainerRestartPolicy),
 *   the container's desired status is not STOPPED, and it ran `restartAttemptPeriod` (60-1800 s, 300 by
 *   default) since its start or last restart (amazon-ecs-agent ecs-agent/api/container/restart/
 *   restart_tracker.go `ShouldRestart`). While its targets drain the task is still RUNNING to the agent, so
 *   the sidecar's deliberate exit 0 is restarted and the task does not stop early.
 * - A container with an enabled restart policy reports `RestartCount` in task metadata v4; others do not
 *   (amazon-ecs-agent agent/handlers/v4/response.go). Its `ignoredExitCodes` are only in the task definition.
 * - "If this parameter is omitted, a container is assumed to be essential"; only an essential container's
 *   exit stops the task's other containers (API_ContainerDefinition `essential`).
 *
 * What the sidecar does about it: it says so at start, and still exits 0 after a drain; it never stops a
 * healthy task, and no other exit code would do better (every code outside `ignoredExitCodes` is restarted
 * alike, and staying up gives up the early stop for good). A restart costs the early stop, nothing more: the
 * restarted sidecar's first answer for its target is `draining`, which it cannot tell from another task's
 * drain on a reused IP (machine.ts), so it waits for ECS, which stops the task at the end of the
 * deregistration as it would without a sidecar. That SIGTERM's exit 0 is not restarted (the container's
 * desired status is STOPPED then). Taking a first `draining` as its own after a restart (RestartCount > 0)
 * would win the early stop back, but a sidecar restarted before its task was registered would then stop a
 * new, healthy task that got a draining task's IP.
 * @module
 */

/** A container's ECS restart policy, as DescribeTaskDefinition gives it. */
export interface RestartPolicyFacts {
  readonly enabled?: boolean;
  readonly ignoredExitCodes?: readonly number[];
  readonly restartAttemptPeriod?: number;
}

/** The sidecar's container as its task definition declares it. */
export interface ContainerDefinitionFacts {
  /** Omitted means essential. */
  readonly essential?: boolean;
  readonly restartPolicy?: RestartPolicyFacts;
}

export interface OwnContainerFacts {
  /** The container's name in the task definition. */
  readonly name: string;
  /** `RestartCount` from task metadata: present exactly when a restart policy is enabled. */
  readonly restartCount: number | undefined;
  /** The container's definition; `undefined` when the task definition could not be read. */
  readonly definition: ContainerDefinitionFacts | undefined;
}

/** One problem found, with the fix; `error` when the early stop is certainly lost. */
export interface OwnContainerFinding {
  readonly level: "error" | "warning";
  readonly check: "restart-policy" | "essential";
  readonly message: string;
  readonly fix: string;
}

/** The exit code that tells ECS the drain is over. */
export const DRAINED_EXIT_CODE = 0;

/** Every problem of the sidecar's own container definition for stopping its task early. */
export function ownContainerFindings(facts: OwnContainerFacts): OwnContainerFinding[] {
  const findings: OwnContainerFinding[] = [];
  const policy = facts.definition?.restartPolicy;
  const fix = `add ${DRAINED_EXIT_CODE} to restartPolicy.ignoredExitCodes of container ${facts.name} ` +
    "(or disable its restart policy)";
  if (facts.definition !== undefined) {
    const ignored = policy?.ignoredExitCodes ?? [];
    if (policy?.enabled === true && !ignored.includes(DRAINED_EXIT_CODE)) {
      findings.push({
        level: "error",
        check: "restart-policy",
        message: `container ${facts.name} has an ECS restart policy that restarts exit ${DRAINED_EXIT_CODE} ` +
          `(ignoredExitCodes: [${ignored.join(", ")}]): after a drain ECS restarts the sidecar instead of ` +
          "stopping the task early",
        fix,
      });
    }
    if (facts.definition.essential === false) {
      findings.push({
        level: "warning",
        check: "essential",
        message: `container ${facts.name} is not essential: its exit after a drain stops nothing, and the task ` +
          "stops only when ECS ends the deregistration, as if there were no sidecar",
        fix: `set "essential": true on container ${facts.name}`,
      });
    }
  } else if (facts.restartCount !== undefined) {
    findings.push({
      level: "warning",
      check: "restart-policy",
      message: `container ${facts.name} has an ECS restart policy (task metadata reports RestartCount ` +
        `${facts.restartCount}): unless its ignoredExitCodes include ${DRAINED_EXIT_CODE}, ECS restarts the ` +
        "sidecar after a drain instead of stopping the task early; without ecs:DescribeTaskDefinition it cannot " +
        "be checked",
      fix: `${fix}, or allow ecs:DescribeTaskDefinition so that the sidecar can check`,
    });
  }
  return findings;
}
