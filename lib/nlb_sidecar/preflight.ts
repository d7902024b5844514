/**
 * The start-up check of the sidecar's own container: task metadata (its name, and `RestartCount` when a
 * restart policy is enabled) and, where ecs:DescribeTaskDefinition is allowed, its container definition
 * (`essential`, `restartPolicy`). The rules are in own_container.ts; this reads and logs. It runs beside
 * the watch and never holds it up or ends it: every failure here costs a check, not the drain.
 * @module
 */
import { DescribeTaskDefinitionCommand, type ECSClient } from "@aws-sdk/client-ecs";
import type { MetadataClient } from "../ecs_metadata.ts";
import type { Logger } from "../log.ts";
import { describeError, isAccessDenied, retry, type RetryOptions } from "../retry.ts";
import {
  type ContainerDefinitionFacts,
  DRAINED_EXIT_CODE,
  type OwnContainerFinding,
  ownContainerFindings,
} from "./own_container.ts";
import { warnPermissionMissing } from "./permissions.ts";

export interface OwnContainerCheck {
  readonly metadata: MetadataClient;
  readonly ecs: ECSClient;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Transient failures are retried until then (monotonicNow's clock), then the check is given up. */
  readonly deadline: number;
  readonly onRetry?: RetryOptions["onRetry"];
}

/** Checks, logs each finding once, and returns them. Throws only the signal's reason when it aborts. */
export async function checkOwnContainer(check: OwnContainerCheck): Promise<OwnContainerFinding[]> {
  const { log, signal, deadline } = check;
  let self, task;
  try {
    [self, task] = await Promise.all([
      check.metadata.self({ signal, deadline }),
      check.metadata.task({ signal, deadline }),
    ]);
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    const { error: code, message } = describeError(error);
    log.warning(
      "cannot read this container's task metadata ({error}): its restart policy and essential flag are not checked",
      { step: "own-container", error: code, detail: message },
    );
    return [];
  }
  const definition = await containerDefinition(check, self.Name, task.Family, task.Revision);
  const findings = ownContainerFindings({ name: self.Name, restartCount: self.RestartCount, definition });
  for (const finding of findings) {
    const fields = {
      step: "own-container",
      check: finding.check,
      container: self.Name,
      problem: finding.message,
      fix: finding.fix,
    };
    if (finding.level === "error") log.error("{problem}. Fix: {fix}", fields);
    else log.warning("{problem}. Fix: {fix}", fields);
  }
  const ignored = definition?.restartPolicy?.enabled === true && findings.every((f) => f.check !== "restart-policy");
  if (ignored) {
    log.info(
      `container {container} has an ECS restart policy that ignores exit ${DRAINED_EXIT_CODE}: a drain still stops the task early`,
      {
        step: "own-container",
        container: self.Name,
      },
    );
  }
  log.debug("own container checked: {problems} problem(s)", { step: "own-container", problems: findings.length });
  return findings;
}

/** The container's definition, or `undefined` (said once) when the task definition cannot be read. */
async function containerDefinition(
  check: OwnContainerCheck,
  name: string,
  family: string | undefined,
  revision: string | undefined,
): Promise<ContainerDefinitionFacts | undefined> {
  const { log, signal } = check;
  if (family === undefined || revision === undefined) {
    log.warning(
      "task metadata names no task definition (Family, Revision): the sidecar's container definition is not checked",
      {
        step: "own-container",
      },
    );
    return undefined;
  }
  const taskDefinition = `${family}:${revision}`;
  try {
    const out = await retry(
      () => check.ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition }), { abortSignal: signal }),
      { signal, deadline: check.deadline, onRetry: check.onRetry },
    );
    const container = out.taskDefinition?.containerDefinitions?.find((c) => c.name === name);
    if (container !== undefined) return { essential: container.essential, restartPolicy: container.restartPolicy };
    log.warning("task definition {taskDefinition} has no container {container}: its definition is not checked", {
      step: "own-container",
      taskDefinition,
      container: name,
    });
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    const { error: code, message } = describeError(error);
    if (isAccessDenied(error)) {
      warnPermissionMissing(
        log,
        "ecs:DescribeTaskDefinition",
        `the sidecar cannot check that its container is essential and that its restart policy, if any, ignores exit ${DRAINED_EXIT_CODE}`,
        { step: "own-container", taskDefinition, error: code, detail: message },
      );
    } else {
      log.warning(
        "cannot read task definition {taskDefinition} ({error}): the sidecar's container definition is not checked",
        { step: "own-container", taskDefinition, error: code, detail: message },
      );
    }
  }
  return undefined;
}
