/**
 * The nlb-sidecar role: discovery once, then the watch loop until the task's targets have drained.
 * The `health` subcommand only reads the status file, so it loads none of the AWS SDK.
 *
 * Exit codes: 0 drained, deregistered, or stopped by SIGTERM/SIGINT; 1 discovery failed with
 * ON_DISCOVERY_FAILURE=exit, an unexpected error, or `health` found the daemon unhealthy;
 * 2 configuration error.
 * @module
 */
import { monotonicNow } from "../clock.ts";
import type { ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { type MetadataClient, metadataClient } from "../ecs_metadata.ts";
import { dropEscalatingPermissions, ExitCode, type RoleContext, type RoleProgram } from "../lifecycle.ts";
import type { Logger } from "../log.ts";
import { describeError, type RetryOptions } from "../retry.ts";
import { roleInfo } from "../roles.ts";
import { ConnectionTables } from "./connections.ts";
import type { DiscoveryError, WatchPlan } from "./discovery.ts";
import { effectiveDrainMode, loadBalancerType } from "./machine.ts";
import { drainMinWaitSeconds, nlbSidecarSettings, validateSettings } from "./settings.ts";
import { warnPermissionMissing } from "./permissions.ts";
import { checkHealth, StatusReporter } from "./status.ts";
import { containerKey, thisWriter } from "./status_writer.ts";

type Context = RoleContext<typeof nlbSidecarSettings>;

export const nlbSidecarProgram: RoleProgram<typeof nlbSidecarSettings> = {
  info: roleInfo("nlb-sidecar")!,
  spec: nlbSidecarSettings,
  subcommands: {
    health: "exit 0 while discovering, while polls complete with an answer or a transient AWS error " +
      "(throttling, 5xx, timeouts), or while draining; exit 1 after a failed discovery, a stalled watch, " +
      "or only permanent errors (access denied, target group not found) for 3 polling intervals",
  },
  helpExtra: [
    "exit 0 also means: the target drained, was deregistered, or SIGTERM/SIGINT arrived.",
    "exit 1 also means: discovery failed with ON_DISCOVERY_FAILURE=exit.",
  ].join("\n"),
  validate: validateSettings,
  run: (context) => context.subcommand === "health" ? health(context) : runSidecar(context),
};

async function health({ config, log, env }: Context): Promise<number> {
  const verdict = await checkHealth(config.statusFile, await containerKey(env));
  if (verdict.healthy) log.info("healthy: {reason}", { reason: verdict.reason });
  else log.warning("unhealthy: {reason}", { reason: verdict.reason });
  return verdict.healthy ? ExitCode.Ok : ExitCode.Failure;
}

/** AWS calls may take this long at most, so that a hung endpoint costs at most one late poll. */
function callTimeoutMs(pollIntervalMs: number): number {
  return Math.min(10_000, Math.max(2_000, pollIntervalMs));
}

async function runSidecar(context: Context): Promise<number> {
  const { config, log, shutdown, env } = context;
  const pollIntervalMs = config.pollingFrequency * 1000;
  const requestTimeoutMs = callTimeoutMs(pollIntervalMs);
  // Reads this process's start from /proc/<pid>/stat, so it too comes before the permissions are dropped.
  const writer = await thisWriter(env);
  using status = new StatusReporter(config.statusFile, { pollIntervalMs, requestTimeoutMs }, log, writer);
  using tables = config.drainMode === "connections" ? await openConnectionTables(log) : undefined;
  // Both need every permission: the first reading fixes the clock's boot-time base from /proc/uptime,
  // and the first report opens the /dev/shm fallback when STATUS_FILE is on a read-only root.
  const discoveryDeadline = monotonicNow() + config.discoveryTimeout * 1000;
  await status.report("discovering", { discoveryDeadline });
  dropEscalatingPermissions();

  const [{ discover, DiscoveryError }, { sidecarClients }, { watchTargets }, { checkOwnContainer }] = await Promise
    .all([
      import("./discovery.ts"),
      import("./clients.ts"),
      import("./watch.ts"),
      import("./preflight.ts"),
    ]);
  const onRetry = (step: string, error: unknown, attempt: number, delayMs: number) => {
    logRetry(log, step, error, attempt, delayMs);
    // The health check tells a discovery that is retrying past DISCOVERY_TIMEOUT from a hung one.
    void status.report("discovering", {
      discoveryDeadline,
      retrying: { step, error: describeError(error).error, nextAttemptAt: monotonicNow() + delayMs },
    });
  };
  const metadata: MetadataClient = metadataClient(config.metadataUri, {
    onRetry: (error, attempt, delayMs) => onRetry("task metadata", error, attempt, delayMs),
  });
  let discovered;
  try {
    discovered = await discover({
      metadata,
      connect: (region) => sidecarClients(region, env, requestTimeoutMs),
      region: config.region,
      targetContainerName: config.targetContainerName,
      deadline: discoveryDeadline,
      signal: shutdown.signal,
      onRetry,
    });
  } catch (error) {
    if (shutdown.signal.aborted) return stopped(context, "discovering");
    if (!(error instanceof DiscoveryError)) throw error;
    return await discoveryFailed(context, error, status);
  }
  const { plan, clients } = discovered;
  logPlan(log, plan);
  // Beside the watch, never before it: a check that waits out throttling must not delay seeing a drain,
  // nor the exit after it (the watch's end stops it).
  const watchEnded = new AbortController();
  const ownContainerChecked = checkOwnContainer({
    metadata,
    ecs: clients.ecs,
    log,
    signal: AbortSignal.any([shutdown.signal, watchEnded.signal]),
    deadline: monotonicNow() + 3 * requestTimeoutMs,
    onRetry: (error, attempt, delayMs) => logRetry(log, "ecs:DescribeTaskDefinition", error, attempt, delayMs),
  }).catch(() => {
    // Only a shutdown or the watch's end stops the check early; the sidecar's own exit says why.
  });
  const drain = effectiveDrainMode(config.drainMode, plan);
  if (drain.fallback) {
    log.warning("DRAIN_MODE=connections is not possible here ({fallback}): draining waits DEREGISTRATION_WAIT", {
      fallback: drain.fallback,
    });
  }
  let capSeconds = config.deregistrationWait;
  if (drain.mode === "connections") {
    try {
      capSeconds = await connectionsDrainCap(context, plan, clients.elbv2, {
        deadline: monotonicNow() + 3 * requestTimeoutMs,
        onRetry: (error, attempt, delayMs) => onRetry("DescribeTargetGroupAttributes", error, attempt, delayMs),
      });
    } catch (error) {
      if (shutdown.signal.aborted) return stopped(context, "watching");
      throw error;
    }
  }
  const floorSeconds = drainMinWaitSeconds(config.drainMinWait, plan.targets.map((t) => loadBalancerType(t.protocol)));
  const outcome = await watchTargets({
    targets: plan.targets,
    elbv2: clients.elbv2,
    drainMode: drain.mode,
    countConnections: tables && ((ports) => tables.countEstablished(ports)),
    pollIntervalMs,
    deregistrationWaitMs: capSeconds * 1000,
    drainFloorMs: floorSeconds * 1000,
    quietPeriodMs: config.drainQuietPeriod * 1000,
    log,
    signal: shutdown.signal,
    onStatus: ({ phase, ...details }) => status.report(phase, details),
  });
  watchEnded.abort();
  await ownContainerChecked;
  if (outcome.kind === "stopped") return stopped(context, outcome.phase);
  return ExitCode.Ok;
}

function logRetry(log: Logger, step: string, error: unknown, attempt: number, delayMs: number): void {
  const { error: code, message, status: httpStatus } = describeError(error);
  log.warning("{step} failed ({error}), retrying in {retryInSeconds} s", {
    step,
    error: code,
    detail: message,
    httpStatus,
    attempt: attempt + 1,
    retryInSeconds: delayMs / 1000,
  });
}

/**
 * A connections drain ends at the latest when ELB ends the deregistration (ECS stops the task then anyway):
 * the longest deregistration delay of the task's groups when the role may read it (the permission is
 * optional), else DEREGISTRATION_WAIT, said once as a warning: a drain capped by a guess may end before ELB
 * has ended the deregistration, or wait on after it.
 */
async function connectionsDrainCap(
  { config, log, shutdown }: Context,
  plan: WatchPlan,
  elbv2: ElasticLoadBalancingV2Client,
  retry: Pick<RetryOptions, "deadline" | "onRetry">,
): Promise<number> {
  const { longestDeregistrationDelay } = await import("./deregistration_delay.ts");
  const arns = plan.targets.map((t) => t.targetGroupArn);
  const delay = await longestDeregistrationDelay(elbv2, arns, { ...retry, signal: shutdown.signal });
  if (delay.kind === "read") return delay.seconds;
  const fields = { error: delay.error, detail: delay.message, deregistrationWaitSeconds: config.deregistrationWait };
  const lost = "a connections drain cannot end when ELB ends the deregistration (the target groups' " +
    `deregistration delay) and ends at DEREGISTRATION_WAIT (${config.deregistrationWait} s) at the latest instead`;
  if (delay.denied) {
    warnPermissionMissing(log, "elasticloadbalancing:DescribeTargetGroupAttributes", lost, fields);
  } else {
    log.warning("cannot read the deregistration delay ({error}): {lost}", { ...fields, lost });
  }
  return config.deregistrationWait;
}

async function openConnectionTables(log: Logger): Promise<ConnectionTables | undefined> {
  try {
    return await ConnectionTables.open();
  } catch (error) {
    log.warning("cannot open /proc/net/tcp ({detail}): DRAIN_MODE=connections will wait DEREGISTRATION_WAIT", {
      detail: (error as Error).message,
    });
    return undefined;
  }
}

function logPlan(log: Logger, plan: WatchPlan): void {
  for (const skipped of plan.skipped) {
    log.warning("skipping load balancer {loadBalancerName}: {reason}", { ...skipped });
  }
  log.info("watching {count} target(s) of task {taskArn} in service {serviceName}", {
    count: plan.targets.length,
    taskArn: plan.taskArn,
    serviceName: plan.serviceName,
    cluster: plan.cluster,
    region: plan.region,
    networkMode: plan.networkMode,
    targets: plan.targets.map((t) => ({
      targetGroup: t.targetGroupName,
      targetGroupArn: t.targetGroupArn,
      target: `${t.id}:${t.port}`,
      protocol: t.protocol,
      targetType: t.targetType,
      container: t.container,
    })),
  });
}

async function discoveryFailed(context: Context, error: DiscoveryError, status: StatusReporter): Promise<number> {
  const { config, log, shutdown } = context;
  log.error("discovery failed ({kind}): {cause}. Fix: {fix}", {
    kind: error.kind,
    cause: error.message,
    fix: error.fix,
  });
  await status.report("discovery-failed", { cause: error.message });
  if (config.onDiscoveryFailure === "exit") return ExitCode.Failure;
  log.info("ON_DISCOVERY_FAILURE=idle: reporting unhealthy and waiting for SIGTERM; the application keeps running");
  if (!shutdown.signal.aborted) {
    await new Promise((resolve) => shutdown.signal.addEventListener("abort", resolve, { once: true }));
  }
  return stopped(context, "discovery-failed");
}

function stopped({ log, shutdown }: Context, state: string): number {
  log.info("stopping on {signal}: exit 0", { signal: String(shutdown.signal.reason), state });
  return ExitCode.Ok;
}
