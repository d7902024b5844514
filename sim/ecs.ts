/**
 * Amazon ECS emulator (AWS JSON 1.1): the read calls the nlb-sidecar makes, `DescribeTasks`,
 * `DescribeServices`, `DescribeContainerInstances` and `DescribeTaskDefinition`, over a state the test
 * edits directly. Unknown resources come back as `failures` with reason `MISSING`, as ECS answers; an
 * unknown cluster is `ClusterNotFoundException`; an unknown task definition `ClientException`; denied
 * operations answer `AccessDeniedException`.
 * @module
 */
import { type AwsEmulator, startAwsEmulator } from "./aws_emulator.ts";
import { AwsError, awsJsonService, ECS_PROTOCOL } from "./aws_protocols.ts";
import type { Faults } from "./faults.ts";

export interface EcsLoadBalancer {
  readonly targetGroupArn?: string;
  readonly loadBalancerName?: string;
  readonly containerName?: string;
  readonly containerPort?: number;
  readonly advancedConfiguration?: { readonly alternateTargetGroupArn?: string };
}

export interface EcsTask {
  readonly taskArn: string;
  /** The task definition it runs, as DescribeTasks gives it (API_Task `taskDefinitionArn`). */
  readonly taskDefinitionArn?: string;
  /** `service:<name>` for a service's task, `family:<name>` for RunTask. */
  readonly group: string;
  /**
   * "If the task is started by an Amazon ECS service, then the startedBy parameter contains the
   * deployment ID of the service that starts it" (API_Task): for a task of a CODE_DEPLOY or EXTERNAL
   * service, the id of its task set.
   */
  readonly startedBy?: string;
  readonly launchType: string;
  readonly containerInstanceArn?: string;
  readonly lastStatus?: string;
}

/**
 * A task set of a CODE_DEPLOY or EXTERNAL service (docs.aws.amazon.com/AmazonECS/latest/APIReference/
 * API_TaskSet.html): its own load balancers, `status` PRIMARY (serving production traffic), ACTIVE or
 * DRAINING, `startedBy` CODE_DEPLOY when CodeDeploy created it, `externalId` the CodeDeploy deployment.
 */
export interface EcsTaskSet {
  /** `ecs-svc/<digits>`, the value the set's tasks carry in `startedBy`. */
  readonly id: string;
  readonly status: "PRIMARY" | "ACTIVE" | "DRAINING";
  readonly startedBy?: string;
  readonly externalId?: string;
  readonly loadBalancers: readonly EcsLoadBalancer[];
}

export interface EcsService {
  readonly serviceName: string;
  /**
   * With CODE_DEPLOY the service's `loadBalancers` is the one it was created with; each task set
   * has its own, and the replacement (green) set is in the other target group (API_Service taskSets).
   */
  readonly loadBalancers: readonly EcsLoadBalancer[];
  readonly deploymentController?: { readonly type: "ECS" | "CODE_DEPLOY" | "EXTERNAL" };
  readonly taskSets?: readonly EcsTaskSet[];
}

export interface EcsContainerInstance {
  readonly containerInstanceArn: string;
  /** Absent for ECS Anywhere (external) instances. */
  readonly ec2InstanceId?: string;
}

/**
 * A container's restart policy as DescribeTaskDefinition returns it (API_ContainerRestartPolicy: `enabled`
 * required; `ignoredExitCodes` none by default, "By default, Amazon ECS does not ignore any exit codes";
 * `restartAttemptPeriod` 60-1800 s, 300 by default). Unkind by default: the optional fields are left out
 * when the test does not give them, as a task definition registered without them may answer.
 */
export interface EcsRestartPolicy {
  readonly enabled: boolean;
  readonly ignoredExitCodes?: readonly number[];
  readonly restartAttemptPeriod?: number;
}

/** One container definition, with the fields the roles read (API_ContainerDefinition). */
export interface EcsContainerDefinition {
  readonly name: string;
  readonly image: string;
  /**
   * "If the essential parameter of a container is marked as true, and that container fails or stops for
   * any reason, all other containers that are part of the task are stopped. ... If this parameter is
   * omitted, a container is assumed to be essential" (API_ContainerDefinition). Left out unless the test
   * sets it, so a reader must take absence as `true`.
   */
  readonly essential?: boolean;
  readonly restartPolicy?: EcsRestartPolicy;
}

/** A registered task definition revision (API_TaskDefinition). */
export interface EcsTaskDefinition {
  readonly family: string;
  readonly revision: number;
  readonly status?: "ACTIVE" | "INACTIVE";
  readonly networkMode?: string;
  readonly containerDefinitions: readonly EcsContainerDefinition[];
}

export interface EcsCluster {
  readonly clusterArn: string;
  readonly tasks: EcsTask[];
  readonly services: EcsService[];
  readonly containerInstances: EcsContainerInstance[];
}

export class EcsState {
  readonly clusters = new Map<string, EcsCluster>();
  /** Operations that answer AccessDeniedException, as for a task role without the permission. */
  readonly denied = new Set<string>();
  /**
   * Operations answered with `ThrottlingException` (HTTP 400) for as long as they are listed: ECS's API rate
   * limits are per account and region, shared with every other caller ("Amazon ECS API request throttling").
   */
  readonly throttled = new Set<string>();
  /** Task definitions are regional, not per cluster: one list for the account and region. */
  readonly taskDefinitions: EcsTaskDefinition[] = [];

  constructor(readonly region = "eu-west-1", readonly account = "123456789012") {}

  /** Creates (or returns) a cluster by short name. */
  cluster(name: string): EcsCluster {
    let cluster = this.clusters.get(name);
    if (!cluster) {
      cluster = {
        clusterArn: `arn:aws:ecs:${this.region}:${this.account}:cluster/${name}`,
        tasks: [],
        services: [],
        containerInstances: [],
      };
      this.clusters.set(name, cluster);
    }
    return cluster;
  }

  taskDefinitionArn(definition: Pick<EcsTaskDefinition, "family" | "revision">): string {
    return `arn:aws:ecs:${this.region}:${this.account}:task-definition/${definition.family}:${definition.revision}`;
  }

  serviceArn(cluster: string, service: string): string {
    return `arn:aws:ecs:${this.region}:${this.account}:service/${cluster}/${service}`;
  }

  #find(input: Record<string, unknown>): { name: string; cluster: EcsCluster } {
    const raw = String(input.cluster ?? "default");
    const name = raw.startsWith("arn:") ? raw.slice(raw.lastIndexOf("/") + 1) : raw;
    const cluster = this.clusters.get(name);
    if (!cluster) throw new AwsError("ClusterNotFoundException", "Cluster not found.");
    return { name, cluster };
  }

  #guard(operation: string): void {
    if (this.throttled.has(operation)) throw new AwsError("ThrottlingException", "Rate exceeded", 400);
    if (this.denied.has(operation)) {
      throw new AwsError(
        "AccessDeniedException",
        `User: arn:aws:sts::${this.account}:assumed-role/task-role/sidecar is not authorized to perform: ` +
          `ecs:${operation} because no identity-based policy allows the ecs:${operation} action`,
      );
    }
  }

  describeTasks(input: Record<string, unknown>) {
    this.#guard("DescribeTasks");
    const { cluster } = this.#find(input);
    const wanted = (input.tasks as string[] | undefined) ?? [];
    if (wanted.length === 0) throw new AwsError("InvalidParameterException", "Tasks cannot be empty.");
    const tasks = cluster.tasks.filter((t) => wanted.includes(t.taskArn) || wanted.includes(shortId(t.taskArn)));
    return {
      tasks: tasks.map((t) => ({ clusterArn: cluster.clusterArn, lastStatus: "RUNNING", ...t })),
      failures: wanted
        .filter((arn) => !tasks.some((t) => t.taskArn === arn || shortId(t.taskArn) === arn))
        .map((arn) => ({ arn, reason: "MISSING" })),
    };
  }

  describeServices(input: Record<string, unknown>) {
    this.#guard("DescribeServices");
    const { name, cluster } = this.#find(input);
    const wanted = (input.services as string[] | undefined) ?? [];
    const found = cluster.services.filter((s) =>
      wanted.includes(s.serviceName) || wanted.includes(this.serviceArn(name, s.serviceName))
    );
    return {
      services: found.map((s) => ({
        serviceArn: this.serviceArn(name, s.serviceName),
        serviceName: s.serviceName,
        clusterArn: cluster.clusterArn,
        status: "ACTIVE",
        loadBalancers: s.loadBalancers,
        deploymentController: s.deploymentController ?? { type: "ECS" },
        ...(s.taskSets
          ? {
            taskSets: s.taskSets.map((set) => ({
              ...set,
              taskSetArn: `arn:aws:ecs:${this.region}:${this.account}:task-set/${name}/${s.serviceName}/` +
                set.id.replace("ecs-svc/", "ecs-svc-"),
              serviceArn: this.serviceArn(name, s.serviceName),
              clusterArn: cluster.clusterArn,
            })),
          }
          : {}),
      })),
      failures: wanted
        .filter((w) => !found.some((s) => s.serviceName === w || this.serviceArn(name, s.serviceName) === w))
        .map((w) => ({ arn: w.startsWith("arn:") ? w : this.serviceArn(name, w), reason: "MISSING" })),
    };
  }

  describeContainerInstances(input: Record<string, unknown>) {
    this.#guard("DescribeContainerInstances");
    const { cluster } = this.#find(input);
    const wanted = (input.containerInstances as string[] | undefined) ?? [];
    const found = cluster.containerInstances.filter((c) => wanted.includes(c.containerInstanceArn));
    return {
      containerInstances: found.map((c) => ({ ...c, status: "ACTIVE", agentConnected: true })),
      failures: wanted
        .filter((w) => !found.some((c) => c.containerInstanceArn === w))
        .map((arn) => ({ arn, reason: "MISSING" })),
    };
  }

  /**
   * DescribeTaskDefinition (API_DescribeTaskDefinition): `taskDefinition` is "The family for the latest
   * ACTIVE revision, family and revision (family:revision) for a specific revision in the family, or full
   * Amazon Resource Name (ARN)"; tags only with `include: ["TAGS"]`. An unknown one is a ClientException
   * ("Unable to describe task definition.", the real API's answer, HTTP 400).
   */
  describeTaskDefinition(input: Record<string, unknown>) {
    this.#guard("DescribeTaskDefinition");
    const wanted = String(input.taskDefinition ?? "");
    if (wanted === "") throw new AwsError("InvalidParameterException", "Task Definition can not be blank.");
    const name = wanted.startsWith("arn:") ? wanted.slice(wanted.lastIndexOf("/") + 1) : wanted;
    const [family, revision] = name.split(":");
    const candidates = this.taskDefinitions.filter((d) =>
      d.family === family &&
      (revision === undefined ? (d.status ?? "ACTIVE") === "ACTIVE" : String(d.revision) === revision)
    );
    const found = candidates.sort((a, b) => b.revision - a.revision)[0];
    if (!found) throw new AwsError("ClientException", "Unable to describe task definition.");
    return {
      taskDefinition: {
        taskDefinitionArn: this.taskDefinitionArn(found),
        family: found.family,
        revision: found.revision,
        status: found.status ?? "ACTIVE",
        ...(found.networkMode ? { networkMode: found.networkMode } : {}),
        containerDefinitions: found.containerDefinitions,
      },
      ...((input.include as string[] | undefined)?.includes("TAGS") ? { tags: [] } : {}),
    };
  }
}

function shortId(arn: string): string {
  return arn.slice(arn.lastIndexOf("/") + 1);
}

export type EcsEmulator = AwsEmulator<EcsState>;

export function startEcsEmulator(state: EcsState = new EcsState(), faults?: Faults): Promise<EcsEmulator> {
  const framing = awsJsonService({
    ...ECS_PROTOCOL,
    operations: {
      DescribeTasks: (input) => state.describeTasks(input),
      DescribeServices: (input) => state.describeServices(input),
      DescribeContainerInstances: (input) => state.describeContainerInstances(input),
      DescribeTaskDefinition: (input) => state.describeTaskDefinition(input),
    },
  });
  return startAwsEmulator(framing, state, faults);
}
