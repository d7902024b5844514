/**
 * ECS task metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`): typed answers for the calling
 * container and its task, with a per-request timeout and retries of transient failures.
 * @module
 */
import { getJson, MalformedAnswerError } from "./http.ts";
import { type Backoff, retry, type RetryOptions } from "./retry.ts";

export type NetworkMode = "awsvpc" | "bridge" | "host" | "none";
export type LaunchType = "EC2" | "FARGATE" | "EXTERNAL" | "MANAGED_INSTANCES";

export interface ContainerNetwork {
  readonly NetworkMode: NetworkMode;
  readonly IPv4Addresses?: readonly string[];
  readonly IPv6Addresses?: readonly string[];
}

export interface PortMapping {
  readonly ContainerPort: number;
  readonly HostPort?: number;
  readonly Protocol?: "tcp" | "udp";
  readonly HostIp?: string;
}

export interface ContainerMetadata {
  readonly DockerId: string;
  readonly Name: string;
  readonly DockerName?: string;
  readonly Labels?: Readonly<Record<string, string>>;
  readonly KnownStatus?: string;
  readonly Networks?: readonly ContainerNetwork[];
  readonly Ports?: readonly PortMapping[];
}

export interface TaskMetadata {
  readonly Cluster: string;
  readonly TaskARN: string;
  readonly Family?: string;
  readonly Revision?: string;
  /** Set on EC2 and ECS Anywhere (agent >= 1.63.1) for service tasks; absent on Fargate. */
  readonly ServiceName?: string;
  readonly LaunchType?: LaunchType;
  readonly AvailabilityZone?: string;
  readonly Containers: readonly ContainerMetadata[];
}

/**
 * A task description without the fields every answer has. The agent fills the task in as its
 * containers start, and an endpoint cut off mid-answer can give `{}`: a reason to look again, never a
 * crash. Thrown by `task()` after its own retries, so the caller decides how long "not yet" may last.
 */
export class IncompleteMetadataError extends MalformedAnswerError {
  constructor(url: string, readonly missing: readonly string[]) {
    super(url, `the task is missing ${missing.join(", ")}`);
    this.name = "IncompleteMetadataError";
  }
}

/** The fields of `value` that a {@link TaskMetadata} must have but it lacks. */
function missingTaskFields(value: unknown): string[] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return ["every field"];
  const task = value as Record<string, unknown>;
  const missing = ["TaskARN", "Cluster"].filter((field) => typeof task[field] !== "string");
  const containers = task.Containers;
  if (!Array.isArray(containers)) missing.push("Containers");
  else if (containers.some((c) => typeof c?.Name !== "string")) missing.push("a container's Name");
  return missing;
}

export interface MetadataClientOptions {
  /** Per-request timeout. */
  readonly timeoutMs?: number;
  readonly backoff?: Backoff;
  readonly onRetry?: RetryOptions["onRetry"];
}

export interface MetadataClient {
  /** `GET $URI/task`. */
  task(options?: { signal?: AbortSignal; deadline?: number }): Promise<TaskMetadata>;
  /** `GET $URI`: the calling container. */
  self(options?: { signal?: AbortSignal; deadline?: number }): Promise<ContainerMetadata>;
}

/** A client for the endpoint at `baseUrl` (the value of `ECS_CONTAINER_METADATA_URI_V4`). */
export function metadataClient(baseUrl: string, options: MetadataClientOptions = {}): MetadataClient {
  const base = baseUrl.replace(/\/$/, "");
  const timeoutMs = options.timeoutMs ?? 2_000;
  const backoff = options.backoff ?? { baseMs: 100, capMs: 5_000 };
  const fetchWithRetry = <T>(url: string, call: { signal?: AbortSignal; deadline?: number } = {}) =>
    retry(() => getJson<T>(url, { timeoutMs, signal: call.signal }), {
      signal: call.signal,
      deadline: call.deadline,
      backoff,
      onRetry: options.onRetry,
    });
  return {
    task: async (call) => {
      const url = `${base}/task`;
      const task = await fetchWithRetry<TaskMetadata>(url, call);
      const missing = missingTaskFields(task);
      if (missing.length > 0) throw new IncompleteMetadataError(url, missing);
      return task;
    },
    self: (call) => fetchWithRetry<ContainerMetadata>(base, call),
  };
}

/** The region of a task: the fourth `:` field of its ARN (`arn:aws:ecs:eu-west-1:123:task/...`). */
export function regionFromTaskArn(taskArn: string): string | undefined {
  const parts = taskArn.split(":");
  return parts.length >= 6 && parts[0] === "arn" && parts[3] ? parts[3] : undefined;
}

/** The short cluster name, whether metadata gave an ARN or a name. */
export function clusterName(cluster: string): string {
  return cluster.startsWith("arn:") ? cluster.slice(cluster.lastIndexOf("/") + 1) : cluster;
}
