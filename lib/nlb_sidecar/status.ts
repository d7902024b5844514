/**
 * What the daemon tells its `health` subcommand through the status file, and the health rule: healthy
 * while the last successful poll of every target group is younger than three polling intervals, or
 * while a drain is under way. ECS runs `health` as the container's healthCheck in an image with no
 * shell, so the rule must be answerable from the file alone.
 * @module
 */
import type { Logger } from "../log.ts";
import { readStatus, type Status, writeStatus } from "../status_file.ts";
import type { MachineStatus } from "./machine.ts";

export type SidecarState = "discovering" | "discovery-failed" | "watching" | "draining" | "finished";

export interface SidecarStatusDetails {
  readonly pollIntervalMs: number;
  readonly lastSuccessfulPollAt?: number;
  readonly drainStartedAt?: number;
  readonly drainDeadline?: number;
  /** Why discovery failed, for the operator who reads the file. */
  readonly cause?: string;
  readonly targets?: MachineStatus["targets"];
}

/** How many polling intervals without an answer make the sidecar unhealthy. */
export const STALE_AFTER_INTERVALS = 3;

export interface HealthVerdict {
  readonly healthy: boolean;
  readonly reason: string;
}

export function healthVerdict(status: Status | undefined, now: number): HealthVerdict {
  if (status === undefined) return { healthy: false, reason: "no status file: the sidecar has not started yet" };
  const details = status.details as Partial<SidecarStatusDetails>;
  if (status.state === "draining" || status.state === "finished") {
    return { healthy: true, reason: `${status.state}: a drain is under way` };
  }
  if (status.state === "discovery-failed") {
    return { healthy: false, reason: `discovery failed: ${details.cause ?? "see the sidecar's log"}` };
  }
  const interval = details.pollIntervalMs ?? 0;
  const last = details.lastSuccessfulPollAt;
  if (last === undefined) return { healthy: false, reason: `${status.state}: no successful poll yet` };
  const ageSeconds = (now - last) / 1000;
  if (now - last < STALE_AFTER_INTERVALS * interval) {
    return { healthy: true, reason: `${status.state}: last successful poll ${ageSeconds.toFixed(1)} s ago` };
  }
  return {
    healthy: false,
    reason:
      `${status.state}: last successful poll ${ageSeconds.toFixed(1)} s ago, more than ${STALE_AFTER_INTERVALS} ` +
      `polling intervals (${(STALE_AFTER_INTERVALS * interval / 1000).toFixed(1)} s)`,
  };
}

/** The health verdict for the status file at `path`; a file that cannot be read is unhealthy. */
export async function checkHealth(path: string, now: number = Date.now()): Promise<HealthVerdict> {
  try {
    return healthVerdict(await readStatus(path), now);
  } catch (error) {
    return { healthy: false, reason: `cannot read ${path}: ${(error as Error).message}` };
  }
}

/** Keeps the status file current; a failed write is logged (once per streak) and never stops the daemon. */
export class StatusReporter {
  #failing = false;

  constructor(
    readonly path: string,
    readonly pollIntervalMs: number,
    readonly log: Logger,
  ) {}

  async report(state: SidecarState, details: Omit<SidecarStatusDetails, "pollIntervalMs"> = {}): Promise<void> {
    try {
      await writeStatus(this.path, {
        role: "nlb-sidecar",
        pid: Deno.pid,
        updatedAt: Date.now(),
        state,
        details: { pollIntervalMs: this.pollIntervalMs, ...details },
      });
      this.#failing = false;
    } catch (error) {
      if (!this.#failing) {
        this.log.warning("cannot write the status file {path}: {detail}; the health check will fail", {
          path: this.path,
          detail: (error as Error).message,
        });
      }
      this.#failing = true;
    }
  }
}
