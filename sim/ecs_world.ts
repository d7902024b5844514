/**
 * A whole load-balanced ECS task for the nlb-sidecar, in one call: task metadata, ECS, ELBv2 and EC2
 * emulators that agree with each other, for the awsvpc, bridge and host network modes, with the task's
 * targets registered as ECS registers them. `env` is what the sidecar needs to talk to it all.
 * @module
 */
import type { ContainerMetadata, NetworkMode, PortMapping, TaskMetadata } from "../lib/ecs_metadata.ts";
import { mappingProtocols } from "../lib/nlb_sidecar/port_mappings.ts";
import {
  type EcsContainerDefinition,
  type EcsEmulator,
  type EcsLoadBalancer,
  type EcsRestartPolicy,
  EcsState,
  startEcsEmulator,
} from "./ecs.ts";
import { type Ec2Emulator, Ec2State, startEc2Emulator } from "./ec2.ts";
import { type Elbv2Emulator, Elbv2State, startElbv2Emulator, type TargetState } from "./elbv2.ts";
import type { Faults } from "./faults.ts";
import { startTaskMetadataEmulator, type TaskMetadataEmulator } from "./task_metadata.ts";

export type WorldNetworkMode = Exclude<NetworkMode, "none">;

export interface WorldTargetGroup {
  readonly name?: string;
  /** `TCP` (default), `TLS`, `UDP`, `TCP_UDP` (NLB), `HTTP`, `HTTPS` (ALB). */
  readonly protocol?: string;
  /** Default: `ip` in awsvpc mode, `instance` otherwise. */
  readonly targetType?: "ip" | "instance" | "lambda";
  readonly ipAddressType?: "ipv4" | "ipv6";
  readonly container?: string;
  readonly containerPort?: number;
  readonly deregistrationDelayMs?: number;
  /** Whether ECS has registered the task's target yet (default true). */
  readonly registered?: boolean;
  /** Make this the alternate group of the entry before it (ECS blue/green deployments). */
  readonly alternateOfPrevious?: boolean;
}

export interface WorldOptions {
  readonly networkMode: WorldNetworkMode;
  /** Default FARGATE in awsvpc mode, EC2 otherwise. */
  readonly launchType?: "FARGATE" | "EC2";
  readonly targetGroups?: readonly WorldTargetGroup[];
  /** Whether task metadata carries ServiceName (EC2 agents do, Fargate does not). Default: EC2 only. */
  readonly serviceNameInMetadata?: boolean;
  /** false: a RunTask task (group `family:...`) that belongs to no service. */
  readonly inService?: boolean;
  /** Add a Classic Load Balancer to the service, which the sidecar must skip. */
  readonly classicLoadBalancer?: boolean;
  /**
   * A CODE_DEPLOY service mid blue/green deployment: the task is in the replacement (ACTIVE) task set,
   * whose load balancers are `targetGroups`; the service's own loadBalancers and the PRIMARY set point
   * at a blue group this task is not in.
   */
  readonly codeDeploy?: boolean;
  /** Containers besides the application (`app`) and the sidecar (`sidecar`). */
  readonly extraContainers?: readonly string[];
  /**
   * The sidecar's container definition as registered: `essential` (left out by default, which ECS takes
   * as true) and its ECS restart policy, which the task metadata then reflects with `RestartCount`.
   */
  readonly sidecarDefinition?: { readonly essential?: boolean; readonly restartPolicy?: EcsRestartPolicy };
  /** How long the NLB keeps sending new flows to a deregistered target (default: the measured 120 s). */
  readonly nlbPropagationMs?: number;
  readonly faults?: {
    readonly metadata?: Faults;
    readonly ecs?: Faults;
    readonly elbv2?: Faults;
    readonly ec2?: Faults;
  };
}

/** Where the sidecar should find this task in one target group. */
export interface WorldTarget {
  readonly targetGroupArn: string;
  readonly id: string;
  readonly port: number;
  readonly container: string;
  readonly containerPort: number;
}

export interface EcsWorld extends AsyncDisposable {
  readonly metadata: TaskMetadataEmulator;
  readonly ecs: EcsEmulator;
  readonly elbv2: Elbv2Emulator;
  readonly ec2: Ec2Emulator;
  readonly targets: readonly WorldTarget[];
  readonly serviceName: string;
  /** The sidecar's environment: metadata URI, AWS endpoints, dummy credentials (region: from the task ARN). */
  readonly env: Readonly<Record<string, string>>;
  /** Sets every target of the task (or the one at `index`) to `state` now. */
  setState(state: TargetState, index?: number): void;
  /** Deregisters every target, as ECS does when it stops the task: draining, then gone after the delay. */
  deregister(): void;
  close(): Promise<void>;
}

export const WORLD = {
  region: "eu-west-1",
  account: "123456789012",
  cluster: "prod",
  service: "web",
  taskIpv4: "10.0.1.23",
  taskIpv6: "2600:1f18:abcd:1201::17",
  bridgeIpv4: "172.17.0.3",
  instanceId: "i-0abc1234def567890",
  instanceIpv4: "10.0.5.17",
  instanceIpv6: "2600:1f18:abcd:1205::5",
  family: "web-app",
  revision: 7,
  /** Bridge mode: the first dynamic host port; each load-balanced port takes the next one for tcp, then udp. */
  firstHostPort: 32768,
} as const;

const TRANSPORTS = ["tcp", "udp"] as const;

export async function startEcsWorld(options: WorldOptions): Promise<EcsWorld> {
  const mode = options.networkMode;
  const launchType = options.launchType ?? (mode === "awsvpc" ? "FARGATE" : "EC2");
  const groups = (options.targetGroups ?? [{}]).map((g, i) => ({
    name: g.name ?? `web-${i}`,
    protocol: g.protocol ?? "TCP",
    targetType: g.targetType ?? (mode === "awsvpc" ? "ip" as const : "instance" as const),
    ipAddressType: g.ipAddressType ?? "ipv4" as const,
    container: g.container ?? "app",
    containerPort: g.containerPort ?? 8080,
    deregistrationDelayMs: g.deregistrationDelayMs,
    registered: g.registered ?? true,
    alternateOfPrevious: g.alternateOfPrevious ?? false,
  }));
  const taskArn = `arn:aws:ecs:${WORLD.region}:${WORLD.account}:task/${WORLD.cluster}/` +
    crypto.randomUUID().replaceAll("-", "");
  const containerInstanceArn = `arn:aws:ecs:${WORLD.region}:${WORLD.account}:container-instance/${WORLD.cluster}/` +
    "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

  // Port mappings as the agent reports them: bridge mode maps each container port to a dynamic host port.
  // Every load-balanced port is mapped for tcp and for udp, to different host ports in bridge mode, so
  // the sidecar has to pick the mapping by the target group's protocol.
  const ports = new Map<string, PortMapping[]>();
  let nextHostPort: number = WORLD.firstHostPort;
  for (const g of groups) {
    const list = ports.get(g.container) ?? [];
    ports.set(g.container, list);
    for (const protocol of TRANSPORTS) {
      if (list.some((p) => p.ContainerPort === g.containerPort && p.Protocol === protocol)) continue;
      const hostPort = mode === "bridge" ? nextHostPort++ : g.containerPort;
      list.push({ ContainerPort: g.containerPort, HostPort: hostPort, Protocol: protocol, HostIp: "0.0.0.0" });
    }
  }
  const network = (name: string) =>
    mode === "awsvpc"
      ? { NetworkMode: mode, IPv4Addresses: [WORLD.taskIpv4], IPv6Addresses: [WORLD.taskIpv6] }
      : mode === "bridge"
      ? { NetworkMode: mode, IPv4Addresses: [name === "app" ? WORLD.bridgeIpv4 : "172.17.0.9"] }
      : { NetworkMode: mode };
  const containerNames = ["app", ...(options.extraContainers ?? []), "sidecar"];
  const containers: ContainerMetadata[] = containerNames.map((name, i) => ({
    DockerId: `${i}`.repeat(12),
    Name: name,
    KnownStatus: "RUNNING",
    Networks: [network(name)],
    Ports: ports.get(name),
  }));
  const task: TaskMetadata = {
    Cluster: `arn:aws:ecs:${WORLD.region}:${WORLD.account}:cluster/${WORLD.cluster}`,
    TaskARN: taskArn,
    Family: WORLD.family,
    Revision: String(WORLD.revision),
    LaunchType: launchType,
    AvailabilityZone: `${WORLD.region}a`,
    ...((options.serviceNameInMetadata ?? launchType === "EC2") && options.inService !== false
      ? { ServiceName: WORLD.service }
      : {}),
    Containers: containers,
  };

  const elbv2State = new Elbv2State(WORLD.region, WORLD.account, { nlbPropagationMs: options.nlbPropagationMs });
  const ecsState = new EcsState(WORLD.region, WORLD.account);
  const ec2State = new Ec2State(WORLD.account);
  const targets: WorldTarget[] = [];
  const loadBalancers: EcsLoadBalancer[] = [];
  for (const g of groups) {
    const arn = elbv2State.createTargetGroup({
      name: g.name,
      protocol: g.protocol,
      port: g.containerPort,
      targetType: g.targetType,
      ipAddressType: g.ipAddressType,
      deregistrationDelayMs: g.deregistrationDelayMs,
      loadBalancerArns: [`arn:aws:elasticloadbalancing:${WORLD.region}:${WORLD.account}:loadbalancer/net/web/1`],
    });
    const ipv6 = g.ipAddressType === "ipv6";
    // ECS registers the host port of the mapping that serves the group's protocol. This is the rule
    // discovery follows too, so tests check targets against literal ports, never against these.
    const [served] = mappingProtocols(g.protocol);
    const mapping = ports.get(g.container)?.find((p) => p.ContainerPort === g.containerPort && p.Protocol === served);
    const id = mode === "awsvpc"
      ? (ipv6 ? WORLD.taskIpv6 : WORLD.taskIpv4)
      : g.targetType === "instance"
      ? WORLD.instanceId
      : (ipv6 ? WORLD.instanceIpv6 : WORLD.instanceIpv4);
    const port = mapping?.HostPort ?? g.containerPort;
    targets.push({ targetGroupArn: arn, id, port, container: g.container, containerPort: g.containerPort });
    if (g.registered) elbv2State.register(arn, id, port, "healthy");
    const previous = loadBalancers.at(-1);
    if (g.alternateOfPrevious && previous) {
      loadBalancers[loadBalancers.length - 1] = {
        ...previous,
        advancedConfiguration: { alternateTargetGroupArn: arn },
      };
    } else {
      loadBalancers.push({ targetGroupArn: arn, containerName: g.container, containerPort: g.containerPort });
    }
  }
  if (options.classicLoadBalancer) {
    loadBalancers.push({
      loadBalancerName: "classic-web",
      containerName: "app",
      containerPort: groups[0].containerPort,
    });
  }
  const sidecarDefinition: EcsContainerDefinition = {
    name: "sidecar",
    image: "ecs-lifecycle/nlb-sidecar:0.1.0",
    ...options.sidecarDefinition,
  };
  ecsState.taskDefinitions.push({
    family: WORLD.family,
    revision: WORLD.revision,
    networkMode: mode,
    containerDefinitions: [
      ...containerNames.filter((name) => name !== "sidecar").map((name) => ({ name, image: `example/${name}:1` })),
      sidecarDefinition,
    ],
  });
  const cluster = ecsState.cluster(WORLD.cluster);
  const green = { id: "ecs-svc/2222222222222222222", status: "ACTIVE" as const, loadBalancers };
  if (options.codeDeploy) {
    const blueArn = elbv2State.createTargetGroup({
      name: "web-blue",
      protocol: groups[0].protocol,
      port: groups[0].containerPort,
      targetType: groups[0].targetType,
      ipAddressType: groups[0].ipAddressType,
      loadBalancerArns: [`arn:aws:elasticloadbalancing:${WORLD.region}:${WORLD.account}:loadbalancer/net/web/1`],
    });
    elbv2State.register(blueArn, "10.0.1.99", groups[0].containerPort, "healthy");
    const blue = [{
      targetGroupArn: blueArn,
      containerName: groups[0].container,
      containerPort: groups[0].containerPort,
    }];
    cluster.services.push({
      serviceName: WORLD.service,
      loadBalancers: blue,
      deploymentController: { type: "CODE_DEPLOY" },
      taskSets: [
        { id: "ecs-svc/1111111111111111111", status: "PRIMARY", startedBy: "CODE_DEPLOY", loadBalancers: blue },
        { ...green, startedBy: "CODE_DEPLOY", externalId: "d-EXAMPLE123" },
      ],
    });
  } else {
    cluster.services.push({ serviceName: WORLD.service, loadBalancers });
  }
  cluster.tasks.push({
    taskArn,
    taskDefinitionArn: ecsState.taskDefinitionArn({ family: WORLD.family, revision: WORLD.revision }),
    ...(options.codeDeploy ? { startedBy: green.id } : {}),
    group: options.inService === false ? "family:web-app" : `service:${WORLD.service}`,
    launchType,
    ...(launchType === "EC2" ? { containerInstanceArn } : {}),
  });
  if (launchType === "EC2") {
    cluster.containerInstances.push({ containerInstanceArn, ec2InstanceId: WORLD.instanceId });
    ec2State.addInstance({
      instanceId: WORLD.instanceId,
      privateIpAddress: WORLD.instanceIpv4,
      ipv6Address: WORLD.instanceIpv6,
    });
  }

  const [metadata, ecs, elbv2, ec2] = await Promise.all([
    startTaskMetadataEmulator({
      task,
      selfName: "sidecar",
      restartPolicyEnabled: options.sidecarDefinition?.restartPolicy?.enabled ? ["sidecar"] : [],
      faults: options.faults?.metadata,
    }),
    startEcsEmulator(ecsState, options.faults?.ecs),
    startElbv2Emulator(elbv2State, options.faults?.elbv2),
    startEc2Emulator(ec2State, options.faults?.ec2),
  ]);
  const close = async () => {
    await Promise.all([metadata.close(), ecs.close(), elbv2.close(), ec2.close()]);
  };
  return {
    metadata,
    ecs,
    elbv2,
    ec2,
    targets,
    serviceName: WORLD.service,
    env: {
      ECS_CONTAINER_METADATA_URI_V4: metadata.metadataUri,
      AWS_ENDPOINT_URL_ECS: ecs.url,
      AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: elbv2.url,
      AWS_ENDPOINT_URL_EC2: ec2.url,
      AWS_ACCESS_KEY_ID: "AKIDEXAMPLE",
      AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    },
    setState(state, index) {
      for (const [i, t] of targets.entries()) {
        if (index === undefined || index === i) elbv2State.setState(t.targetGroupArn, t.id, t.port, state);
      }
    },
    deregister() {
      for (const t of targets) elbv2State.deregister(t.targetGroupArn, t.id, t.port);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
