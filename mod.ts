/**
 * ecs-lifecycle as a library: the three roles (each a program for {@link runRole}, its settings and its
 * pure decision machine), and the shared building blocks they are made of. The loopback emulators in
 * `sim/` are test and demo tooling and are not part of this surface.
 *
 * ```ts
 * import { nlbSidecar, runRole } from "./mod.ts";
 * Deno.exit(await runRole(nlbSidecar.nlbSidecarProgram));
 * ```
 * @module
 */
export * as nlbSidecar from "./lib/nlb_sidecar/mod.ts";
export * as appmeshHelper from "./lib/appmesh_helper/mod.ts";
export * as networkSentry from "./lib/network_sentry/mod.ts";

export {
  ExitCode,
  type RoleContext,
  roleHelp,
  type RoleProgram,
  type RunOptions,
  runRole,
  Shutdown,
} from "./lib/lifecycle.ts";
export {
  ConfigError,
  type ConfigOf,
  integer,
  oneOf,
  parseSettings,
  seconds,
  type Setting,
  type SettingsSpec,
  text,
  toggle,
  url,
} from "./lib/config.ts";
export { type Level, type LogFormat, logFormatSetting, logLevelSetting, type RotatingFile } from "./lib/log.ts";
export { type Backoff, backoffDelay, classifyError, describeError, type ErrorClass, retry } from "./lib/retry.ts";
export {
  clusterName,
  type ContainerMetadata,
  metadataClient,
  type NetworkMode,
  regionFromTaskArn,
  type TaskMetadata,
} from "./lib/ecs_metadata.ts";
export { awsClientConfig, credentialsFromEnvironment } from "./lib/aws.ts";
export { sleep } from "./lib/clock.ts";
export { type RoleInfo, type RoleName, ROLES } from "./lib/roles.ts";
export { VERSION } from "./lib/version.ts";
