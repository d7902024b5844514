/**
 * The nlb-sidecar role: an essential sidecar that exits 0 once its task's NLB or ALB targets have
 * drained, so that ECS stops the task as soon as it is safe instead of after the full deregistration
 * delay. The program, its settings, the pure decision machine and the adapters it is built from.
 * @module
 */
export { nlbSidecarProgram } from "./program.ts";
export { type NlbSidecarConfig, nlbSidecarSettings, validateSettings } from "./settings.ts";
export {
  type Action,
  DRAIN_MODES,
  DrainMachine,
  type DrainMode,
  effectiveDrainMode,
  type Finish,
  type FinishReason,
  type MachineEvent,
  type MachineOptions,
  type MachineStatus,
  type Observation,
  type Step,
  type WatchedTarget,
} from "./machine.ts";
export { discover, DiscoveryError, type DiscoveryFailure, type PlannedTarget, type WatchPlan } from "./discovery.ts";
export { type SidecarClients, sidecarClients } from "./clients.ts";
export { describeTargetHealth } from "./target_health.ts";
export { ConnectionTables, countEstablished } from "./connections.ts";
export { type WatchOutcome, watchTargets } from "./watch.ts";
export { checkHealth, healthVerdict, type SidecarState } from "./status.ts";
export { containerKey } from "./status_writer.ts";
