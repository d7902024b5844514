/**
 * DescribeTargetHealth for this task's targets in one target group, as the decision machine reads it:
 * one reading per target, or a poll error that says whether trying again later can help.
 * @module
 */
import {
  DescribeTargetHealthCommand,
  type ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { classifyError, describeError } from "../retry.ts";
import type { PollError, TargetHealthReading } from "./machine.ts";

/** One call for every target of this task in the group; answers for other targets are ignored. */
export async function describeTargetHealth(
  client: ElasticLoadBalancingV2Client,
  targetGroupArn: string,
  targets: ReadonlyArray<{ readonly id: string; readonly port: number }>,
  signal?: AbortSignal,
): Promise<TargetHealthReading[]> {
  const output = await client.send(
    new DescribeTargetHealthCommand({
      TargetGroupArn: targetGroupArn,
      Targets: targets.map((t) => ({ Id: t.id, Port: t.port })),
    }),
    { abortSignal: signal },
  );
  const readings: TargetHealthReading[] = [];
  for (const description of output.TargetHealthDescriptions ?? []) {
    const id = description.Target?.Id;
    const state = description.TargetHealth?.State;
    if (id === undefined || state === undefined) continue;
    const port = description.Target?.Port ?? targets.find((t) => t.id === id)?.port;
    if (port === undefined) continue;
    readings.push({
      id,
      port,
      state,
      reason: description.TargetHealth?.Reason,
      description: description.TargetHealth?.Description,
    });
  }
  return readings;
}

/** A failed call as the machine sees it: the AWS error code, its message, and transient or not. */
export function pollError(error: unknown): PollError {
  const { error: code, message } = describeError(error);
  return { code, message, transient: classifyError(error) === "transient" };
}
