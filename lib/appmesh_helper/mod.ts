/**
 * The appmesh-helper role's public surface: the program, its settings, the pure shutdown machine and
 * the Envoy admin client (also used by the emulator's tests and the demo).
 * @module
 */
export { appmeshHelperProgram } from "./program.ts";
export { appHealthUrl, type AppmeshHelperConfig, appmeshHelperSettings } from "./settings.ts";
export {
  type Action,
  type AppCheckResult,
  DRAIN_MODES,
  type DrainMode,
  type EnvoyReading,
  type ExitReason,
  type FailCause,
  type HoldReason,
  type IngressCount,
  type Observation,
  ShutdownMachine,
  type ShutdownPlan,
} from "./machine.ts";
export {
  EnvoyAdmin,
  type IngressListener,
  ingressListener,
  type ListenerCounter,
  type ServerInfo,
} from "./envoy_admin.ts";
