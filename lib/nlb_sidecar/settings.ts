/**
 * The nlb-sidecar's settings: the three of the original nlb-sidecar-for-ecs (same names and defaults, so
 * it is a drop-in), then the new ones. One declaration each; `--help` and the README table are generated
 * from here.
 * @module
 */
import { ConfigError, type ConfigOf, isRegionName, oneOf, seconds, text, url } from "../config.ts";
import { logFormatSetting, logLevelSetting } from "../log.ts";
import { DRAIN_MODES, type LoadBalancerType } from "./machine.ts";

/**
 * DRAIN_MIN_WAIT when unset, per load balancer type. NLB: 120 s, because users measure that an NLB keeps
 * opening new flows to a deregistered target for about two minutes whatever the deregistration delay
 * (aws/containers-roadmap#470; kubernetes-sigs/aws-load-balancer-controller#2366, #3270): a drain that
 * ends sooner stops the application while new connections still arrive. ALB: 0, because an ALB stops
 * sending requests to a deregistering target at once (ALB user guide, "Deregistration delay"); the quiet
 * period alone covers the requests in flight.
 */
export const DRAIN_MIN_WAIT_DEFAULTS: Readonly<Record<LoadBalancerType, number>> = { network: 120, application: 0 };

/**
 * The shortest polling interval against AWS. ELB's read calls share one token bucket per account and
 * region: 40 tokens, refilled at 10 a second, also used by the console and tooling
 * (docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html). Each task makes one
 * DescribeTargetHealth per target group per interval, so at 1 s one task-group pair takes a tenth of the
 * account's refill and ten of them take it all; at 0.01 s a single task would make 100 calls a second,
 * ten times the whole account's rate. Below 1 s the setting is a typo, never a tuning.
 */
export const MIN_POLLING_SECONDS = 1;

/** The role's settings, each declared once below; parsed values are `ConfigOf<NlbSidecarSettings>`. */
export type NlbSidecarSettings = typeof nlbSidecarSettings;

export const nlbSidecarSettings = {
  deregistrationWait: seconds({
    env: "DEREGISTRATION_WAIT",
    flag: "deregistration-wait",
    default: 120,
    help: "Seconds to wait after the target starts draining before exiting; in connections mode the cap when " +
      "the target groups' deregistration delay cannot be read.",
  }),
  pollingFrequency: seconds({
    env: "POLLING_FREQUENCY",
    flag: "polling-frequency",
    default: 30,
    above: 0,
    // Enforced by validateSettings: an emulator on loopback may be polled faster.
    bounds: `>= ${MIN_POLLING_SECONDS} s`,
    help: "Seconds between DescribeTargetHealth calls (one per target group, +-10% jitter).",
  }),
  targetContainerName: text({
    env: "TARGET_CONTAINER_NAME",
    flag: "target-container-name",
    type: "name",
    help: "Container whose targets are watched; default: every container of this task the service load-balances.",
  }),
  drainMode: oneOf({
    env: "DRAIN_MODE",
    flag: "drain-mode",
    default: "fixed",
    choices: DRAIN_MODES,
    help: "fixed: always wait DEREGISTRATION_WAIT; connections: exit once no connection is left (awsvpc/host, TCP).",
  }),
  drainMinWait: seconds({
    env: "DRAIN_MIN_WAIT",
    flag: "drain-min-wait",
    help: "connections mode: seconds a drain lasts at least; the quiet period counts only after it. Default: " +
      `${DRAIN_MIN_WAIT_DEFAULTS.network} with an NLB target group (it sends new connections that long), ` +
      `${DRAIN_MIN_WAIT_DEFAULTS.application} with ALB groups only.`,
  }),
  drainQuietPeriod: seconds({
    env: "DRAIN_QUIET_PERIOD",
    flag: "drain-quiet-period",
    default: 5,
    help: "connections mode: seconds without an ESTABLISHED connection on a target port before exiting.",
  }),
  discoveryTimeout: seconds({
    env: "DISCOVERY_TIMEOUT",
    flag: "discovery-timeout",
    default: 300,
    help: "Seconds discovery waits for a task not ready yet (no IP, host port); transient AWS errors retry past it.",
  }),
  onDiscoveryFailure: oneOf({
    env: "ON_DISCOVERY_FAILURE",
    flag: "on-discovery-failure",
    default: "idle",
    choices: ["idle", "exit"] as const,
    help: "idle: report unhealthy and wait for SIGTERM (the application keeps running); exit: exit 1.",
  }),
  region: text({
    env: "AWS_REGION",
    flag: "region",
    type: "region",
    help: "AWS region of the ECS and ELB APIs; default: the region in the task's ARN.",
  }),
  metadataUri: url({
    env: "ECS_CONTAINER_METADATA_URI_V4",
    flag: "metadata-uri",
    required: true,
    help: "ECS task metadata endpoint v4; ECS sets it in every container.",
  }),
  statusFile: text({
    env: "STATUS_FILE",
    flag: "status-file",
    default: "/tmp/ecs-nlb-sidecar.status.json",
    type: "path",
    help: "File the daemon keeps fresh for the `health` subcommand; unwritable (read-only root): " +
      "/dev/shm/<its name with the container's key>.",
  }),
  logLevel: logLevelSetting(),
  logFormat: logFormatSetting(),
};

export type NlbSidecarConfig = ConfigOf<typeof nlbSidecarSettings>;

/** The drain floor in force: the setting, or the default of the task's load balancers (the larger one). */
export function drainMinWaitSeconds(configured: number | undefined, types: Iterable<LoadBalancerType>): number {
  return configured ?? Math.max(0, ...[...types].map((type) => DRAIN_MIN_WAIT_DEFAULTS[type]));
}

/** The ELB endpoint the SDK will call, when the environment overrides it. */
function elbEndpoint(env: Readonly<Record<string, string | undefined>>): string | undefined {
  return env.AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 ?? env.AWS_ENDPOINT_URL;
}

/** An endpoint on this machine is an emulator: it has no account budget to protect. */
function isLoopback(endpoint: string | undefined): boolean {
  if (endpoint === undefined || !URL.canParse(endpoint)) return false;
  const host = new URL(endpoint).hostname;
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Checks that one setting alone cannot express: every problem, one {@link ConfigError} each. */
export function validateSettings(
  config: NlbSidecarConfig,
  env: Readonly<Record<string, string | undefined>> = {},
): ConfigError[] {
  const errors: ConfigError[] = [];
  if (config.pollingFrequency < MIN_POLLING_SECONDS && !isLoopback(elbEndpoint(env))) {
    errors.push(
      new ConfigError(
        "POLLING_FREQUENCY",
        String(config.pollingFrequency),
        `must be at least ${MIN_POLLING_SECONDS} s: every task polls each target group this often, and the ` +
          "account's ELB API budget (10 calls a second per region) is shared by all of them and the console",
      ),
    );
  }
  if (config.region !== undefined && !isRegionName(config.region)) {
    errors.push(new ConfigError("AWS_REGION", config.region, "expected a region name such as eu-west-1"));
  }
  if (!config.statusFile.startsWith("/")) {
    errors.push(new ConfigError("STATUS_FILE", config.statusFile, "expected an absolute path"));
  }
  return errors;
}
