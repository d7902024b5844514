/**
 * ecs-lifecycle as a library: the three roles (each a program for {@link runRole}, its settings and its
 * pure decision machine), and the shared building blocks they are made of that stand on their own: the
 * retry rule for AWS errors, the ECS task metadata client and where AWS credentials come from. The
 * loopback emulators in `sim/` are test and demo tooling and are not part of this surface, nor are the
 * builders the roles declare their settings with.
 *
 * @example Run a role in this process, as its binary would
 * ```ts
 * import { nlbSidecar, runRole } from "./mod.ts";
 *
 * Deno.exit(await runRole(nlbSidecar.nlbSidecarProgram));
 * ```
 * @module
 */

/**
 * The nlb-sidecar role: an essential sidecar that exits 0 once its task's NLB or ALB targets have drained.
 *
 * @example
 * ```ts
 * import { nlbSidecar, runRole } from "./mod.ts";
 *
 * const code = await runRole(nlbSidecar.nlbSidecarProgram, { args: ["--help"] });
 * ```
 */
export * as nlbSidecar from "./lib/nlb_sidecar/mod.ts";
/**
 * The appmesh-helper role: healthy once Envoy is live; on SIGTERM it fails Envoy's health check and drains.
 *
 * @example
 * ```ts
 * import { appmeshHelper, runRole } from "./mod.ts";
 *
 * const code = await runRole(appmeshHelper.appmeshHelperProgram, { args: ["--help"] });
 * ```
 */
export * as appmeshHelper from "./lib/appmesh_helper/mod.ts";
/**
 * The network-sentry role: an ECS Anywhere host daemon that keeps containers alive through control-plane outages.
 *
 * @example
 * ```ts
 * import { networkSentry, runRole } from "./mod.ts";
 *
 * const code = await runRole(networkSentry.networkSentryProgram, { args: ["--help"] });
 * ```
 */
export * as networkSentry from "./lib/network_sentry/mod.ts";

export {
  ExitCode,
  type LoggingSettings,
  type RoleContext,
  type RoleProgram,
  type RunOptions,
  runRole,
  Shutdown,
  type ShutdownSignalName,
} from "./lib/lifecycle.ts";
export {
  type Checked,
  checkSettings,
  ConfigError,
  type ConfigOf,
  type Parsed,
  type ParseInput,
  type Parser,
  parseSettings,
  type Setting,
  type SettingsSpec,
  type SettingValue,
} from "./lib/config.ts";
export { type Level, type LogFormat, type Logger, type RotatingFile } from "./lib/log.ts";
export { type Backoff, classifyError, describeError, type ErrorClass, retry, type RetryOptions } from "./lib/retry.ts";
export {
  clusterName,
  type ContainerMetadata,
  type ContainerNetwork,
  type LaunchType,
  type MetadataClient,
  metadataClient,
  type MetadataClientOptions,
  type NetworkMode,
  type PortMapping,
  regionFromTaskArn,
  type TaskMetadata,
} from "./lib/ecs_metadata.ts";
export { type AwsCredentials, credentialsFromEnvironment, type CredentialsProvider } from "./lib/aws.ts";
export { type RoleInfo, type RoleName, ROLES } from "./lib/roles.ts";
export { VERSION } from "./lib/version.ts";
