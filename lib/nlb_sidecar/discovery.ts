/**
 * Start-up discovery: from the task metadata to this task's target in each of its service's target
 * groups. task metadata -> service (`ServiceName`, else the `DescribeTasks` group) -> `DescribeServices`
 * load balancers of this task's containers -> `DescribeTargetGroups` -> the target for the network
 * mode and target type:
 *
 * | network mode    | target type | Id                                  | Port                      |
 * | --------------- | ----------- | ----------------------------------- | ------------------------- |
 * | awsvpc          | ip          | the task's IPv4 (IPv6 for ipv6 TGs) | containerPort             |
 * | bridge          | instance    | EC2 instance id                     | HostPort of containerPort |
 * | bridge          | ip          | the instance's private IP           | HostPort of containerPort |
 * | host            | instance/ip | as bridge                           | containerPort             |
 *
 * Transient failures are retried with backoff for as long as they last, a task that is not ready yet
 * until the deadline (see `retryStep`); everything else becomes a {@link DiscoveryError} that names its
 * cause and the fix.
 * @module
 */
import {
  DescribeContainerInstancesCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  type Failure,
  type LoadBalancer,
  type Service,
  type Task,
} from "@aws-sdk/client-ecs";
import { DescribeTargetGroupsCommand, type TargetGroup } from "@aws-sdk/client-elastic-load-balancing-v2";
import {
  clusterName,
  type ContainerMetadata,
  IncompleteMetadataError,
  type MetadataClient,
  type NetworkMode,
  regionFromTaskArn,
  type TaskMetadata,
} from "../ecs_metadata.ts";
import { monotonicNow } from "../clock.ts";
import { classifyError, describeError, isAccessDenied, retry, type RetryOptions } from "../retry.ts";
import type { SidecarClients } from "./clients.ts";
import type { WatchedTarget } from "./machine.ts";
import { IAM_FIX } from "./permissions.ts";
import { mappingProtocols } from "./port_mappings.ts";

export interface PlannedTarget extends WatchedTarget {
  readonly targetGroupName: string;
  readonly protocol: string;
  readonly targetType: string;
  readonly ipAddressType: string;
  readonly container: string;
  readonly containerPort: number;
}

/** A load balancer of the service that the sidecar does not watch, and why. */
export interface SkippedLoadBalancer {
  readonly loadBalancerName?: string;
  readonly container?: string;
  readonly reason: string;
}

export interface WatchPlan {
  readonly cluster: string;
  readonly taskArn: string;
  readonly serviceName: string;
  readonly region: string;
  readonly networkMode: NetworkMode;
  readonly targets: readonly PlannedTarget[];
  readonly skipped: readonly SkippedLoadBalancer[];
}

export type DiscoveryFailure =
  | "not-in-service"
  | "no-target-group"
  | "access-denied"
  | "unknown-container"
  | "unsupported"
  | "not-found"
  | "timeout";

/** A discovery failure that retrying cannot fix. */
export class DiscoveryError extends Error {
  constructor(readonly kind: DiscoveryFailure, message: string, readonly fix: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DiscoveryError";
  }
}

/** Something not set up yet (no IP, no host port, a task ECS does not list yet): worth another look. */
class NotReadyYet extends Error {
  constructor(message: string, readonly fix: string) {
    super(message);
    this.name = "NotReadyYet";
  }
}

export interface DiscoveryOptions {
  readonly metadata: MetadataClient;
  /** Builds the AWS clients once the region is known. */
  readonly connect: (region: string) => SidecarClients;
  readonly region?: string;
  readonly targetContainerName?: string;
  /** When a task that is not ready yet stops being waited for (transient AWS failures are retried past it). */
  readonly deadline: number;
  /** The clock `deadline` is on; default {@link monotonicNow}. */
  readonly now?: () => number;
  readonly signal?: AbortSignal;
  /** Told about every transient failure before it is retried. */
  readonly onRetry?: (step: string, error: unknown, attempt: number, delayMs: number) => void;
  readonly backoff?: RetryOptions["backoff"];
}

export interface Discovered {
  readonly plan: WatchPlan;
  readonly clients: SidecarClients;
}

const START_AFTER_APPLICATION =
  "start the sidecar after the application container (dependsOn condition START) and check its portMappings";

export async function discover(options: DiscoveryOptions): Promise<Discovered> {
  const attempt = <T>(step: string, operation: () => Promise<T>) => retryStep(options, step, operation);
  // The metadata client retries transient failures itself, for as long as they last; an answer that
  // lacks fields comes out of it and is retried here as "not ready yet", up to the deadline.
  const readTask = () => attempt("task metadata", () => options.metadata.task({ signal: options.signal }));
  let task = await readTask();
  const region = options.region ?? regionFromTaskArn(task.TaskARN);
  if (region === undefined) {
    throw new DiscoveryError("unsupported", `the task ARN ${task.TaskARN} names no region`, "set AWS_REGION");
  }
  const clients = options.connect(region);
  const ecs = new EcsLookups(clients, task, attempt, options.signal);
  const serviceName = task.ServiceName ?? serviceOfGroup((await ecs.task()).group, task.TaskARN);
  const service = await attempt("ecs:DescribeServices", async () => ownDeployment(await ecs.service(serviceName), ecs));
  const { entries, skipped } = loadBalancersOfTask(service, task, options.targetContainerName);
  const groups = await describeTargetGroups(clients, entries, attempt, options.signal);
  const resolver = new TargetResolver(clients, ecs, attempt, options.signal);
  const targets = await retryStep(options, "task network", async (attemptNumber) => {
    // The application container may still be starting: its IP or host port shows up in a later read.
    if (attemptNumber > 0) task = await readTask();
    const resolved: PlannedTarget[] = [];
    for (const entry of entries) resolved.push(await resolver.target(task, entry, groups.get(entry.targetGroupArn)!));
    return resolved;
  });
  return {
    plan: {
      cluster: clusterName(task.Cluster),
      taskArn: task.TaskARN,
      serviceName,
      region,
      networkMode: networkOf(containerOf(task, targets[0].container)).NetworkMode,
      targets,
      skipped,
    },
    clients,
  };
}

type Attempt = <T>(step: string, operation: () => Promise<T>) => Promise<T>;

/**
 * Retries `operation` and turns what it gives up on into DiscoveryErrors. Transient AWS failures
 * (throttling, 5xx, timeouts, unreachable endpoints) are retried for as long as they last: they say
 * nothing about this task, and failing for good on them would make ECS replace every task of a fleet
 * during a regional API event, after AWS has recovered. A task that is not ready yet (no address, no
 * host port, incomplete metadata) is retried until the deadline: past DISCOVERY_TIMEOUT it is this
 * task's own definition that is wrong.
 */
async function retryStep<T>(
  options: DiscoveryOptions,
  step: string,
  operation: (attempt: number) => Promise<T>,
): Promise<T> {
  const now = options.now ?? monotonicNow;
  try {
    return await retry(operation, {
      signal: options.signal,
      backoff: options.backoff,
      classify: (error) =>
        isNotReadyYet(error) ? (now() < options.deadline ? "transient" : "permanent") : classifyError(error),
      onRetry: (error, attempt, delayMs) => options.onRetry?.(step, error, attempt, delayMs),
    });
  } catch (error) {
    if (options.signal?.aborted || error instanceof DiscoveryError) throw error;
    throw asDiscoveryError(step, error);
  }
}

const isNotReadyYet = (error: unknown) => error instanceof NotReadyYet || error instanceof IncompleteMetadataError;

function asDiscoveryError(step: string, error: unknown): DiscoveryError {
  const { error: code, message } = describeError(error);
  if (isNotReadyYet(error)) {
    return new DiscoveryError(
      "timeout",
      `${step} still not ready when DISCOVERY_TIMEOUT ran out: ${code}: ${message}`,
      error instanceof NotReadyYet
        ? error.fix
        : "check the ECS agent (its version and log): the task metadata it serves is incomplete",
      { cause: error },
    );
  }
  if (isAccessDenied(error)) {
    return new DiscoveryError("access-denied", `${step} was refused: ${code}: ${message}`, IAM_FIX, { cause: error });
  }
  return new DiscoveryError(
    "not-found",
    `${step} failed: ${code}: ${message}`,
    "check that the service and its target groups exist",
    { cause: error },
  );
}

/** `service:<name>` is a service's task; `family:<name>` was started by RunTask. */
function serviceOfGroup(group: string | undefined, taskArn: string): string {
  if (group?.startsWith("service:")) return group.slice("service:".length);
  throw new DiscoveryError(
    "not-in-service",
    `task ${taskArn} does not belong to a service (group ${JSON.stringify(group ?? "")})`,
    "run the sidecar only in tasks started by an ECS service with a load balancer; for other tasks leave it out",
  );
}

/** ECS lookups shared by the steps, each made at most once. */
class EcsLookups {
  #task?: Promise<Task>;
  #instanceId?: Promise<string>;

  constructor(
    readonly clients: SidecarClients,
    readonly metadata: TaskMetadata,
    readonly attempt: Attempt,
    readonly signal: AbortSignal | undefined,
  ) {}

  task(): Promise<Task> {
    return this.#task ??= this.attempt("ecs:DescribeTasks", async () => {
      const out = await this.clients.ecs.send(
        new DescribeTasksCommand({ cluster: this.metadata.Cluster, tasks: [this.metadata.TaskARN] }),
        { abortSignal: this.signal },
      );
      const task = out.tasks?.[0];
      // ECS is eventually consistent: a task that is running but not found yet will be found on a retry.
      if (!task) {
        throw new NotReadyYet(
          `DescribeTasks does not know task ${this.metadata.TaskARN}${failures(out)}`,
          "check that AWS_REGION is the task's region",
        );
      }
      return task;
    });
  }

  async service(name: string) {
    const out = await this.attempt(
      "ecs:DescribeServices",
      () =>
        this.clients.ecs.send(new DescribeServicesCommand({ cluster: this.metadata.Cluster, services: [name] }), {
          abortSignal: this.signal,
        }),
    );
    const service = out.services?.[0];
    if (!service) {
      throw new DiscoveryError(
        "not-in-service",
        `service ${name} not found in cluster ${this.metadata.Cluster}${failures(out)}`,
        "check that the service exists and AWS_REGION names its region",
      );
    }
    return service;
  }

  /** The EC2 instance of a bridge or host task. */
  instanceId(): Promise<string> {
    return this.#instanceId ??= (async () => {
      const containerInstanceArn = (await this.task()).containerInstanceArn;
      if (!containerInstanceArn) {
        throw new DiscoveryError(
          "unsupported",
          `task ${this.metadata.TaskARN} runs on no container instance`,
          "bridge and host network modes need an EC2 container instance",
        );
      }
      const out = await this.attempt("ecs:DescribeContainerInstances", () =>
        this.clients.ecs.send(
          new DescribeContainerInstancesCommand({
            cluster: this.metadata.Cluster,
            containerInstances: [containerInstanceArn],
          }),
          { abortSignal: this.signal },
        ));
      const instanceId = out.containerInstances?.[0]?.ec2InstanceId;
      if (!instanceId) {
        throw new DiscoveryError(
          "unsupported",
          `container instance ${containerInstanceArn} is not an EC2 instance${failures(out)}`,
          "load-balanced bridge and host tasks must run on EC2 container instances",
        );
      }
      return instanceId;
    })();
  }
}

/**
 * A CODE_DEPLOY (or EXTERNAL) service keeps load balancers per task set: during a blue/green deployment
 * the replacement set is in the other target group than the service's own `loadBalancers` say. The
 * task's `startedBy` is the id of its task set ("the deployment ID of the service that starts it",
 * API_Task; API_TaskSet `id`), so the set is found by it. A set not listed yet is worth another look:
 * DescribeServices is eventually consistent.
 */
async function ownDeployment(service: Service, ecs: EcsLookups): Promise<Service> {
  const controller = service.deploymentController?.type;
  if (controller !== "CODE_DEPLOY" && controller !== "EXTERNAL") return service;
  const startedBy = (await ecs.task()).startedBy;
  const taskSet = service.taskSets?.find((set) => set.id !== undefined && set.id === startedBy);
  if (!taskSet) {
    const ids = (service.taskSets ?? []).map((set) => `${set.id} (${set.status})`).join(", ") || "none";
    throw new NotReadyYet(
      `task ${ecs.metadata.TaskARN} (startedBy ${startedBy ?? "unset"}) is in none of the task sets of ` +
        `${controller} service ${service.serviceName}: ${ids}`,
      "check that the task was started by the service's deployment (its startedBy names its task set)",
    );
  }
  return { ...service, loadBalancers: taskSet.loadBalancers ?? [] };
}

function failures(out: { failures?: Failure[] }): string {
  const failure = out.failures?.[0];
  return failure ? ` (${failure.reason ?? "failure"}${failure.detail ? `: ${failure.detail}` : ""})` : "";
}

interface LoadBalancerEntry {
  readonly targetGroupArn: string;
  readonly container: string;
  readonly containerPort: number;
}

/**
 * The service's target groups for this task's containers. Classic load balancers are skipped (they have
 * no target health to watch). With ECS blue/green deployments a task sits in the alternate group, so
 * both groups are watched.
 */
function loadBalancersOfTask(
  service: { loadBalancers?: LoadBalancer[]; serviceName?: string },
  task: TaskMetadata,
  targetContainerName: string | undefined,
): { entries: LoadBalancerEntry[]; skipped: SkippedLoadBalancer[] } {
  const names = task.Containers.map((c) => c.Name);
  if (targetContainerName !== undefined && !names.includes(targetContainerName)) {
    throw new DiscoveryError(
      "unknown-container",
      `TARGET_CONTAINER_NAME=${targetContainerName} names no container of this task (containers: ${names.join(", ")})`,
      "set TARGET_CONTAINER_NAME to the load-balanced container's name, or leave it unset",
    );
  }
  const entries: LoadBalancerEntry[] = [];
  const skipped: SkippedLoadBalancer[] = [];
  for (const lb of service.loadBalancers ?? []) {
    const container = lb.containerName;
    if (!lb.targetGroupArn) {
      skipped.push({
        loadBalancerName: lb.loadBalancerName,
        container,
        reason: "a Classic Load Balancer has no target groups; only NLB and ALB target groups are watched",
      });
      continue;
    }
    if (!container || lb.containerPort === undefined || !names.includes(container)) continue;
    if (targetContainerName !== undefined && container !== targetContainerName) continue;
    for (const arn of [lb.targetGroupArn, lb.advancedConfiguration?.alternateTargetGroupArn]) {
      if (arn) entries.push({ targetGroupArn: arn, container, containerPort: lb.containerPort });
    }
  }
  if (entries.length === 0) {
    const wanted = targetContainerName ?? names.join(", ");
    throw new DiscoveryError(
      "no-target-group",
      `service ${service.serviceName} has no NLB or ALB target group for container ${wanted}`,
      "attach a target group to the service (loadBalancers), or set TARGET_CONTAINER_NAME to the load-balanced container",
    );
  }
  return { entries, skipped };
}

async function describeTargetGroups(
  clients: SidecarClients,
  entries: readonly LoadBalancerEntry[],
  attempt: Attempt,
  signal: AbortSignal | undefined,
): Promise<Map<string, TargetGroup>> {
  const arns = [...new Set(entries.map((e) => e.targetGroupArn))];
  const out = await attempt(
    "elasticloadbalancing:DescribeTargetGroups",
    () => clients.elbv2.send(new DescribeTargetGroupsCommand({ TargetGroupArns: arns }), { abortSignal: signal }),
  );
  const groups = new Map((out.TargetGroups ?? []).map((g) => [g.TargetGroupArn ?? "", g]));
  for (const arn of arns) {
    if (!groups.has(arn)) {
      throw new DiscoveryError("not-found", `target group ${arn} not found`, "check the service's loadBalancers");
    }
  }
  return groups;
}

function containerOf(task: TaskMetadata, name: string): ContainerMetadata {
  const container = task.Containers.find((c) => c.Name === name);
  if (!container) {
    throw new NotReadyYet(`container ${name} is not in the task metadata`, "check the service's containerName");
  }
  return container;
}

function networkOf(container: ContainerMetadata) {
  const network = container.Networks?.[0];
  // ECS load-balances only awsvpc, bridge and host tasks, so `none` (or no network at all) is a
  // container the agent has not wired up yet: a bridge sidecar that starts before the application.
  if (!network || network.NetworkMode === "none") {
    throw new NotReadyYet(
      `container ${container.Name} has no network yet (network mode none)`,
      START_AFTER_APPLICATION,
    );
  }
  if (!["awsvpc", "bridge", "host"].includes(network.NetworkMode)) {
    throw new DiscoveryError(
      "unsupported",
      `container ${container.Name} uses network mode ${network?.NetworkMode ?? "none"}`,
      "load-balanced tasks use the awsvpc, bridge or host network mode",
    );
  }
  return network;
}

class TargetResolver {
  constructor(
    readonly clients: SidecarClients,
    readonly ecs: EcsLookups,
    readonly attempt: Attempt,
    readonly signal: AbortSignal | undefined,
  ) {}

  async target(task: TaskMetadata, entry: LoadBalancerEntry, group: TargetGroup): Promise<PlannedTarget> {
    const container = containerOf(task, entry.container);
    const network = networkOf(container);
    const targetType = group.TargetType ?? "";
    const ipv6 = group.IpAddressType === "ipv6";
    const base = {
      targetGroupArn: entry.targetGroupArn,
      targetGroupName: group.TargetGroupName ?? entry.targetGroupArn,
      protocol: group.Protocol ?? "",
      targetType,
      ipAddressType: group.IpAddressType ?? "ipv4",
      container: entry.container,
      containerPort: entry.containerPort,
    };
    if (targetType !== "ip" && targetType !== "instance") {
      throw new DiscoveryError(
        "unsupported",
        `target group ${base.targetGroupName} has target type ${targetType}`,
        "ECS tasks are ip or instance targets; point the service at such a target group",
      );
    }
    if (network.NetworkMode === "awsvpc") {
      if (targetType !== "ip") {
        throw new DiscoveryError(
          "unsupported",
          `target group ${base.targetGroupName} has target type instance, but awsvpc tasks can only be ip targets`,
          "use a target group of type ip for awsvpc tasks",
        );
      }
      const address = ipv6 ? network.IPv6Addresses?.[0] : network.IPv4Addresses?.[0];
      if (address === undefined) {
        if (ipv6 && network.IPv4Addresses?.length) {
          throw new DiscoveryError(
            "unsupported",
            `target group ${base.targetGroupName} is ipv6 but the task has no IPv6 address`,
            "run the task in a subnet with IPv6 addresses, or use an ipv4 target group",
          );
        }
        throw new NotReadyYet(`container ${container.Name} has no IP address`, START_AFTER_APPLICATION);
      }
      return { ...base, id: address, port: entry.containerPort };
    }
    const port = network.NetworkMode === "host" ? entry.containerPort : hostPort(container, entry, group.Protocol);
    const instanceId = await this.ecs.instanceId();
    const id = targetType === "instance" ? instanceId : await this.instanceAddress(instanceId, ipv6);
    return { ...base, id, port };
  }

  /** The private address of the task's instance: only `ip` targets of bridge and host tasks need it. */
  async instanceAddress(instanceId: string, ipv6: boolean): Promise<string> {
    const [{ DescribeInstancesCommand }, ec2] = await Promise.all([
      import("./ec2.ts"),
      this.clients.ec2(),
    ]);
    const out = await this.attempt(
      "ec2:DescribeInstances",
      () => ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }), { abortSignal: this.signal }),
    );
    const instance = out.Reservations?.[0]?.Instances?.[0];
    const address = ipv6
      ? instance?.Ipv6Address ?? instance?.NetworkInterfaces?.[0]?.Ipv6Addresses?.[0]?.Ipv6Address
      : instance?.PrivateIpAddress;
    if (!address) {
      throw new DiscoveryError(
        "unsupported",
        `instance ${instanceId} has no private ${ipv6 ? "IPv6" : "IPv4"} address`,
        ipv6 ? "use an ipv4 target group or give the instance an IPv6 address" : "check the instance",
      );
    }
    return address;
  }
}

function hostPort(container: ContainerMetadata, entry: LoadBalancerEntry, protocol: string | undefined): number {
  for (const wanted of mappingProtocols(protocol)) {
    const mapping = container.Ports?.find((p) =>
      p.ContainerPort === entry.containerPort && (p.Protocol ?? "tcp") === wanted && p.HostPort
    );
    if (mapping?.HostPort) return mapping.HostPort;
  }
  throw new NotReadyYet(
    `container ${container.Name} has no host port for container port ${entry.containerPort}`,
    START_AFTER_APPLICATION,
  );
}
