/**
 * The network sentry's public surface: the role program, its settings, and the pure decision logic
 * (for embedding and for tests).
 * @module
 */
export { networkSentryProgram, SentryExitCode } from "./program.ts";
export { type NetworkSentryConfig, networkSentrySettings } from "./settings.ts";
export {
  countProbe,
  type Journal,
  type ManagedContainer,
  type Mode,
  type Observation,
  type ObservedContainer,
  type Reading,
  SentryMachine,
  type SentryMachineSettings,
  type Step,
  STRATEGIES,
  type Strategy,
  type Verdict,
  verdictOf,
} from "./machine.ts";
export { probeEndpoint, type ProbeResult } from "./probe.ts";
export { renderMetrics, type SentryMetrics } from "./metrics.ts";
