/**
 * Prometheus text exposition for node_exporter's textfile collector. The file is replaced atomically
 * (the collector never reads half a file) and is world-readable, since node_exporter seldom runs as root.
 * @module
 */
import { writeFileAtomic } from "../atomic_file.ts";
import { type Mode, MODES } from "./machine.ts";

export interface SentryMetrics {
  readonly mode: Mode;
  readonly consecutiveFailures: number;
  readonly lastProbe?: { readonly reachable: boolean; readonly latencyMs: number; readonly at: number };
  /** Outages begun (`offline`) and hand-backs completed (`online`) since the process started. */
  readonly transitions: { readonly offline: number; readonly online: number };
  /** Containers the sentry holds on an on-failure restart policy right now. */
  readonly containersKeptAlive: number;
  /** Failed Docker calls since the process started. */
  readonly dockerErrors: number;
  /** ECS containers on on-failure that no journal records (eINS stopped mid-outage, a lost journal). */
  readonly leftoverContainers: number;
  /** The agent is paused while the journal holds no pause. */
  readonly leftoverAgentPaused: boolean;
  /** ECS containers logging through awslogs in blocking mode: they cannot restart while offline. */
  readonly awslogsBlocking: number;
}

const PREFIX = "ecs_network_sentry";

export function renderMetrics(metrics: SentryMetrics): string {
  const lines: string[] = [];
  const family = (name: string, type: "gauge" | "counter", help: string, samples: Array<[string, number]>) => {
    lines.push(`# HELP ${PREFIX}_${name} ${help}`, `# TYPE ${PREFIX}_${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${PREFIX}_${name}${labels} ${value}`);
  };
  family(
    "mode",
    "gauge",
    "1 for the mode the sentry is in, 0 for the others.",
    MODES.map((mode) => [`{mode="${mode}"}`, mode === metrics.mode ? 1 : 0]),
  );
  family("consecutive_probe_failures", "gauge", "Failed probes in a row (0 after any success).", [
    ["", metrics.consecutiveFailures],
  ]);
  if (metrics.lastProbe) {
    family("last_probe_success", "gauge", "1 when ECS itself answered the last probe over verified TLS.", [
      ["", metrics.lastProbe.reachable ? 1 : 0],
    ]);
    family("last_probe_latency_seconds", "gauge", "Duration of the last probe, failed or not.", [
      ["", round(metrics.lastProbe.latencyMs / 1000)],
    ]);
    family("last_probe_timestamp_seconds", "gauge", "When the last probe ended (Unix time).", [
      ["", round(metrics.lastProbe.at / 1000)],
    ]);
  }
  family("transitions_total", "counter", "Outages begun (to=offline) and hand-backs completed (to=online).", [
    ['{to="offline"}', metrics.transitions.offline],
    ['{to="online"}', metrics.transitions.online],
  ]);
  family("containers_kept_alive", "gauge", "ECS containers held on an on-failure restart policy.", [
    ["", metrics.containersKeptAlive],
  ]);
  family("docker_errors_total", "counter", "Docker API calls that failed (retried on the next probe).", [
    ["", metrics.dockerErrors],
  ]);
  family(
    "leftover_containers",
    "gauge",
    "ECS containers on on-failure that no journal records (left by eINS or a lost journal; adopted once online).",
    [["", metrics.leftoverContainers]],
  );
  family("leftover_agent_paused", "gauge", "1 when the ECS agent is paused and no journal holds that pause.", [
    ["", metrics.leftoverAgentPaused ? 1 : 0],
  ]);
  family("awslogs_blocking_containers", "gauge", "ECS containers on awslogs in blocking mode (no restart offline).", [
    ["", metrics.awslogsBlocking],
  ]);
  return lines.join("\n") + "\n";
}

export function writeMetrics(path: string, metrics: SentryMetrics): Promise<void> {
  return writeFileAtomic(path, renderMetrics(metrics), 0o644);
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
