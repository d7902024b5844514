/**
 * ECS task metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`): typed answers for the calling
 * container and its task, with a per-request timeout and retries of transient failures.
 * @module
 */
import { getJson, MalformedAnswerError } from "./http.ts";
import { type Backoff, retry, type RetryOptions } from "./retry.ts";

/**
 * A task's network mode; ECS Anywhere and EC2 tasks may use any, Fargate only `awsvpc`.
 *
 * @example
 * ```ts
 * const hasOwnAddress = (mode: NetworkMode) => mode === "awsvpc";
 * ```
 */
export type NetworkMode = "awsvpc" | "bridge" | "host" | "none";
/**
 * Where the task runs: EC2 container instances, Fargate, ECS Anywhere (`EXTERNAL`) or ECS Managed Instances.
 *
 * @example
 * ```ts
 * const onPremises = (launchType: LaunchType | undefined) => launchType === "EXTERNAL";
 * ```
 */
export type LaunchType = "EC2" | "FARGATE" | "EXTERNAL" | "MANAGED_INSTANCES";

/**
 * One network a container is attached to.
 *
 * @example
 * ```ts
 * const firstAddress = (network: ContainerNetwork) => network.IPv4Addresses?.[0] ?? network.IPv6Addresses?.[0];
 * ```
 */
export interface ContainerNetwork {
  /** The task's network mode. */
  readonly NetworkMode: NetworkMode;
  /** The container's private IPv4 addresses (in `awsvpc`, the task's ENI). */
  readonly IPv4Addresses?: readonly string[];
  /** Its IPv6 addresses, when the subnet has IPv6. */
  readonly IPv6Addresses?: readonly string[];
}

/**
 * A port mapping of a container.
 *
 * @example
 * ```ts
 * const hostPortOf = (mapping: PortMapping) => mapping.HostPort ?? mapping.ContainerPort;
 * ```
 */
export interface PortMapping {
  /** The port inside the container. */
  readonly ContainerPort: number;
  /** The port on the host; in bridge mode a dynamic one when the task definition leaves it 0. */
  readonly HostPort?: number;
  /** `tcp` unless the mapping says otherwise. */
  readonly Protocol?: "tcp" | "udp";
  /** The host address the port is bound to. */
  readonly HostIp?: string;
}

/**
 * One container, as `GET $ECS_CONTAINER_METADATA_URI_V4` describes it.
 *
 * @example
 * ```ts
 * const running = (container: ContainerMetadata) => container.KnownStatus === "RUNNING";
 * ```
 */
export interface ContainerMetadata {
  /** The Docker container id. */
  readonly DockerId: string;
  /** The container's name in the task definition. */
  readonly Name: string;
  /** The name Docker knows it by. */
  readonly DockerName?: string;
  /** The container's image. */
  readonly Image?: string;
  /** Docker labels, the `com.amazonaws.ecs.*` ones included. */
  readonly Labels?: Readonly<Record<string, string>>;
  /** `PENDING`, `RUNNING` or `STOPPED`, as the agent last saw it. */
  readonly KnownStatus?: string;
  /** The networks it is attached to. */
  readonly Networks?: readonly ContainerNetwork[];
  /** Its published ports. */
  readonly Ports?: readonly PortMapping[];
  /**
   * How often ECS restarted it under its container restart policy. Present only for a container whose
   * restart policy is enabled: the agent sets it when `RestartPolicyEnabled()` (amazon-ecs-agent
   * agent/handlers/v4/response.go, `RestartCount *int` with omitempty), and "You can use the Amazon ECS task
   * metadata endpoint ... to monitor the number of times a container has restarted" ("Restart individual
   * containers in Amazon ECS tasks with container restart policies", Amazon ECS Developer Guide).
   */
  readonly RestartCount?: number;
}

/**
 * The calling task, as `GET $ECS_CONTAINER_METADATA_URI_V4/task` describes it.
 *
 * @example
 * ```ts
 * const containerNamed = (task: TaskMetadata, name: string) => task.Containers.find((c) => c.Name === name);
 * ```
 */
export interface TaskMetadata {
  /** The cluster, as an ARN or a short name. */
  readonly Cluster: string;
  /** The task's ARN; its fourth field is the region. */
  readonly TaskARN: string;
  /** The task definition family. */
  readonly Family?: string;
  /** The task definition revision. */
  readonly Revision?: string;
  /** Set on EC2 and ECS Anywhere (agent >= 1.63.1) for service tasks; absent on Fargate. */
  readonly ServiceName?: string;
  /** Where the task runs. */
  readonly LaunchType?: LaunchType;
  /** The task's Availability Zone. */
  readonly AvailabilityZone?: string;
  /** Every container of the task. */
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

/**
 * How patient a {@link MetadataClient} is.
 *
 * @example
 * ```ts
 * const options: MetadataClientOptions = { timeoutMs: 1_000, onRetry: (error) => console.warn(error) };
 * ```
 */
export interface MetadataClientOptions {
  /** Per-request timeout; default 2 s. */
  readonly timeoutMs?: number;
  /** Waits between attempts; default 100 ms doubling up to 5 s. */
  readonly backoff?: Backoff;
  /** Told about each failure that is retried. */
  readonly onRetry?: RetryOptions["onRetry"];
}

/**
 * Typed answers from the task metadata endpoint; transient failures are retried until `deadline`
 * (on monotonicNow's clock) or until `signal` aborts.
 *
 * @example
 * ```ts
 * const client: MetadataClient = metadataClient(Deno.env.get("ECS_CONTAINER_METADATA_URI_V4")!);
 * const self = await client.self({ signal: AbortSignal.timeout(10_000) });
 * ```
 */
export interface MetadataClient {
  /** `GET $URI/task`. */
  task(options?: { signal?: AbortSignal; deadline?: number }): Promise<TaskMetadata>;
  /** `GET $URI`: the calling container. */
  self(options?: { signal?: AbortSignal; deadline?: number }): Promise<ContainerMetadata>;
}

/**
 * A client for the endpoint at `baseUrl` (the value of `ECS_CONTAINER_METADATA_URI_V4`).
 *
 * @example Find the task's cluster and region
 * ```ts
 * const metadata = metadataClient(Deno.env.get("ECS_CONTAINER_METADATA_URI_V4")!, { timeoutMs: 1_000 });
 * const task = await metadata.task({ signal: AbortSignal.timeout(30_000) });
 * console.log(clusterName(task.Cluster), regionFromTaskArn(task.TaskARN));
 * ```
 */
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

/**
 * The region of a task: the fourth `:` field of its ARN (`arn:aws:ecs:eu-west-1:123:task/...`).
 *
 * @example
 * ```ts
 * regionFromTaskArn("arn:aws:ecs:eu-west-1:123456789012:task/prod/0123456789abcdef"); // "eu-west-1"
 * ```
 */
export function regionFromTaskArn(taskArn: string): string | undefined {
  const parts = taskArn.split(":");
  return parts.length >= 6 && parts[0] === "arn" && parts[3] ? parts[3] : undefined;
}

/**
 * The short cluster name, whether metadata gave an ARN or a name.
 *
 * @example
 * ```ts
 * clusterName("arn:aws:ecs:eu-west-1:123456789012:cluster/prod"); // "prod"
 * ```
 */
export function clusterName(cluster: string): string {
  return cluster.startsWith("arn:") ? cluster.slice(cluster.lastIndexOf("/") + 1) : cluster;
}

/**
 * The Service Connect proxy container ECS adds to every task of a service that uses Service Connect. It is
 * not in the task definition; task metadata and DescribeTasks list it as `ecs-service-connect-` and six
 * random characters (`ecs-service-connect-nconQf` in the agent's own log, aws/amazon-ecs-agent#4397), from
 * the agent's `ecs-service-connect-agent` image (agent/engine/serviceconnect/manager_linux.go).
 *
 * @example
 * ```ts
 * const proxy = (task: TaskMetadata) => serviceConnectContainer(task)?.Name;
 * ```
 */
export function serviceConnectContainer(task: TaskMetadata): ContainerMetadata | undefined {
  return task.Containers.find((container) =>
    container.Name.startsWith(SERVICE_CONNECT_CONTAINER_PREFIX) ||
    /(^|\/)ecs-service-connect-agent(:|@|$)/.test(container.Image ?? "")
  );
}

/** How ECS names the Service Connect proxy container it adds to a task. */
export const SERVICE_CONNECT_CONTAINER_PREFIX = "ecs-service-connect-";
