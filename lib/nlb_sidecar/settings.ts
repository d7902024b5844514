/**
 * The nlb-sidecar's settings: the three of the original nlb-sidecar-for-ecs (same names and defaults, so
 * it is a drop-in), then the new ones. One declaration each; `--help` and the README table are generated from here.
 * @module
 */
import { ConfigError, type ConfigOf, oneOf, seconds, text, url } from "../config.ts";
import { logFormatSetting, logLevelSetting } from "../log.ts";
import { DRAIN_MODES } from "./machine.ts";

/** The role's settings, each declared once below; parsed values are `ConfigOf<NlbSidecarSettings>`. */
export type NlbSidecarSettings = typeof nlbSidecarSettings;

export const nlbSidecarSettings = {
  deregistrationWait: seconds({
    env: "DEREGISTRATION_WAIT",
    flag: "deregistration-wait",
    default: 120,
    help: "Seconds to wait after the target starts draining before exiting (the cap in connections mode).",
  }),
  pollingFrequency: seconds({
    env: "POLLING_FREQUENCY",
    flag: "polling-frequency",
    default: 30,
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
    help: "Seconds that start-up discovery may spend retrying transient errors before it counts as failed.",
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
    help: "File the daemon keeps fresh for the `health` subcommand.",
  }),
  logLevel: logLevelSetting(),
  logFormat: logFormatSetting(),
};

export type NlbSidecarConfig = ConfigOf<typeof nlbSidecarSettings>;

const REGION_NAME = /^[a-z]{2}(-[a-z]+)+-\d+$/;

/** Checks that one setting alone cannot express. */
export function validateSettings(config: NlbSidecarConfig): void {
  if (config.pollingFrequency <= 0) {
    throw new ConfigError("POLLING_FREQUENCY", String(config.pollingFrequency), "must be greater than 0");
  }
  if (config.region !== undefined && !REGION_NAME.test(config.region)) {
    throw new ConfigError("AWS_REGION", config.region, "expected a region name such as eu-west-1");
  }
  if (!config.statusFile.startsWith("/")) {
    throw new ConfigError("STATUS_FILE", config.statusFile, "expected an absolute path");
  }
}
