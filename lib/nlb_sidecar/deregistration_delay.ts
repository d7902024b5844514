/**
 * The target groups' own deregistration delay (`deregistration_delay.timeout_seconds`, from
 * DescribeTargetGroupAttributes): after it ELB ends the deregistration and ECS stops the task anyway, so a
 * `connections` drain need not be capped by a guessed DEREGISTRATION_WAIT. The permission is optional:
 * a role that may not read the attributes gets the guess.
 * @module
 */
import {
  DescribeTargetGroupAttributesCommand,
  type ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { describeError, isAccessDenied, retry, type RetryOptions } from "../retry.ts";

const DELAY_KEY = "deregistration_delay.timeout_seconds";

export type DeregistrationDelay =
  /** The longest delay of the groups, in seconds: ECS waits for the last group to finish. */
  | { readonly kind: "read"; readonly seconds: number }
  /** Access denied (`denied`), or any error that outlived the retries: the caller falls back to its own cap. */
  | { readonly kind: "unreadable"; readonly denied: boolean; readonly error: string; readonly message: string };

/** Reads every group's delay, retrying transient errors as `options` say; never throws for AWS errors. */
export async function longestDeregistrationDelay(
  client: ElasticLoadBalancingV2Client,
  targetGroupArns: readonly string[],
  options: RetryOptions = {},
): Promise<DeregistrationDelay> {
  // One group's lasting failure decides: the other groups' retries stop with it, instead of spending the
  // account's ELB budget in the background for an answer nobody waits for.
  const givenUp = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, givenUp.signal]) : givenUp.signal;
  try {
    const delays = await Promise.all(
      [...new Set(targetGroupArns)].map((arn) => retry(() => delayOf(client, arn, signal), { ...options, signal })),
    );
    return { kind: "read", seconds: Math.max(...delays) };
  } catch (error) {
    if (options.signal?.aborted) throw error;
    const { error: code, message } = describeError(error);
    return { kind: "unreadable", denied: isAccessDenied(error), error: code, message };
  } finally {
    givenUp.abort();
  }
}

async function delayOf(client: ElasticLoadBalancingV2Client, arn: string, signal?: AbortSignal): Promise<number> {
  const output = await client.send(new DescribeTargetGroupAttributesCommand({ TargetGroupArn: arn }), {
    abortSignal: signal,
  });
  const value = output.Attributes?.find((a) => a.Key === DELAY_KEY)?.Value;
  const seconds = Number(value);
  if (value === undefined || !Number.isFinite(seconds) || seconds < 0) {
    throw new Error(`${arn} has no valid ${DELAY_KEY} (${value})`);
  }
  return seconds;
}
