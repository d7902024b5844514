/**
 * Elastic Load Balancing v2 emulator (query protocol): `DescribeTargetGroups`, `DescribeTargetHealth`
 * with per-target health the test scripts, and `DescribeTargetGroupAttributes`. As ELB does: a target
 * that is not registered answers `unused` / `Target.NotRegistered`; a deregistered target is `draining`
 * (`Target.DeregistrationInProgress`) for the group's deregistration delay, then not registered; a
 * deleted target group is `TargetGroupNotFound`; an Id of the wrong kind for the group is `InvalidTarget`.
 *
 * Deregistration differs by load balancer type, and the emulator is as unkind as the real thing:
 * - Network Load Balancer: users measure that an NLB keeps opening new flows to a deregistered target
 *   for about two minutes, and that the target stays `draining` at least that long, whatever the
 *   deregistration delay ("deregistration takes at least 2 minutes regardless of the deregistration delay
 *   setting": kubernetes-sigs/aws-load-balancer-controller#2366, measured with raw TCP connections;
 *   the same in #3270 with a 5 s delay, and aws/containers-roadmap#470, "the effective minimum delay seems
 *   to be 120 seconds"). So after DeregisterTargets the target still receives new flows for
 *   `nlbPropagationMs` (default 120 s) and is `draining` for the longer of that and its delay.
 * - Application Load Balancer: "If a deregistering target has no in-flight requests and no active
 *   connections, Elastic Load Balancing immediately completes the deregistration process, without
 *   waiting for the deregistration delay to elapse" (ALB user guide, target group attributes,
 *   Deregistration delay), and it stops sending requests to a deregistering target. So a target without
 *   an open flow goes `unused` at once; one with a flow is `draining` for the delay, without new flows.
 * @module
 */
import { type AwsEmulator, startAwsEmulator } from "./aws_emulator.ts";
import { AwsError, awsQueryService, ELBV2_PROTOCOL, queryList } from "./aws_protocols.ts";
import type { Faults } from "./faults.ts";

export type TargetState =
  | "initial"
  | "healthy"
  | "unhealthy"
  | "unhealthy.draining"
  | "unused"
  | "draining"
  | "unavailable";

export interface TargetHealth {
  readonly State: TargetState;
  readonly Reason?: string;
  readonly Description?: string;
}

/** What ELB says alongside each state (the reason codes and texts of the real service). */
export const TYPICAL_HEALTH: Readonly<Record<TargetState, TargetHealth>> = {
  initial: {
    State: "initial",
    Reason: "Elb.RegistrationInProgress",
    Description: "Target registration is in progress",
  },
  healthy: { State: "healthy" },
  unhealthy: { State: "unhealthy", Reason: "Target.FailedHealthChecks", Description: "Health checks failed" },
  "unhealthy.draining": {
    State: "unhealthy.draining",
    Reason: "Target.FailedHealthChecks",
    Description: "Target is unhealthy and is being drained",
  },
  unused: {
    State: "unused",
    Reason: "Target.NotRegistered",
    Description: "Target is not registered to the target group",
  },
  draining: {
    State: "draining",
    Reason: "Target.DeregistrationInProgress",
    Description: "Target deregistration is in progress",
  },
  unavailable: { State: "unavailable", Reason: "Target.HealthCheckDisabled", Description: "Health checks disabled" },
};

export interface TargetGroupDefinition {
  readonly name: string;
  readonly protocol: string;
  readonly port: number;
  readonly targetType: "ip" | "instance" | "lambda" | "alb";
  readonly ipAddressType?: "ipv4" | "ipv6";
  readonly loadBalancerArns?: readonly string[];
  /** `deregistration_delay.timeout_seconds`, in milliseconds here so tests can be fast. */
  readonly deregistrationDelayMs?: number;
}

interface Registration {
  health: TargetHealth;
  /** States still to be answered, one per DescribeTargetHealth that includes this target. */
  script: TargetState[];
  drainingUntil?: number;
  /** A deregistered NLB target: new flows still arrive until then. */
  newFlowsUntil?: number;
}

interface TargetGroupRecord extends TargetGroupDefinition {
  readonly arn: string;
  readonly targets: Map<string, Registration>;
  /** Flows open to each target now (by `id:port`), as the downstream traffic reports them. */
  readonly openFlows: Map<string, number>;
}

export type LoadBalancerType = "network" | "application" | "gateway";

/** The load balancer a target group serves follows from its protocol (a group has one type). */
export function loadBalancerTypeOf(protocol: string): LoadBalancerType {
  if (protocol === "HTTP" || protocol === "HTTPS") return "application";
  return protocol === "GENEVE" ? "gateway" : "network";
}

export interface Elbv2Options {
  /** How long an NLB keeps opening new flows to a deregistered target (measured: about 120 s). */
  readonly nlbPropagationMs?: number;
}

/** ELB's default `deregistration_delay.timeout_seconds`. */
const DEFAULT_DEREGISTRATION_DELAY_MS = 300_000;
/** About two minutes in every report cited above. */
const DEFAULT_NLB_PROPAGATION_MS = 120_000;

const key = (id: string, port: number) => `${id}:${port}`;

/** One DescribeTargetHealth call as it arrived: when, and the targets exactly as the caller named them. */
export interface TargetHealthCall {
  readonly at: number;
  /** `port` is undefined when the caller left it out (ELB then uses the group's port). */
  readonly targets: ReadonlyArray<{ readonly id: string; readonly port?: number }>;
}

export class Elbv2State {
  readonly targetGroups = new Map<string, TargetGroupRecord>();
  readonly denied = new Set<string>();
  /**
   * Operations answered with ELB's `Throttling` (HTTP 400) for as long as they are listed: the account's
   * shared bucket is empty (docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html).
   */
  readonly throttled = new Set<string>();
  /** Every DescribeTargetHealth call for an existing target group, per group ARN. */
  readonly healthCalls = new Map<string, TargetHealthCall[]>();

  readonly nlbPropagationMs: number;

  constructor(readonly region = "eu-west-1", readonly account = "123456789012", options: Elbv2Options = {}) {
    this.nlbPropagationMs = options.nlbPropagationMs ?? DEFAULT_NLB_PROPAGATION_MS;
  }

  createTargetGroup(definition: TargetGroupDefinition): string {
    const arn = `arn:aws:elasticloadbalancing:${this.region}:${this.account}:targetgroup/${definition.name}/` +
      crypto.randomUUID().replaceAll("-", "").slice(0, 16);
    this.targetGroups.set(arn, { ...definition, arn, targets: new Map(), openFlows: new Map() });
    return arn;
  }

  deleteTargetGroup(arn: string): void {
    this.targetGroups.delete(arn);
  }

  #group(arn: string): TargetGroupRecord {
    const group = this.targetGroups.get(arn);
    if (!group) throw new AwsError("TargetGroupNotFound", `Target groups '${arn}' not found`);
    return group;
  }

  /** Registers a target (as ECS does when the task starts) in `state`. */
  register(arn: string, id: string, port: number, state: TargetState = "healthy"): void {
    this.#group(arn).targets.set(key(id, port), { health: TYPICAL_HEALTH[state], script: [] });
  }

  /** Sets a registered target's state now; `unused` (NotRegistered) removes it. */
  setState(arn: string, id: string, port: number, state: TargetState): void {
    const group = this.#group(arn);
    if (state === "unused") {
      group.targets.delete(key(id, port));
      return;
    }
    const registration = group.targets.get(key(id, port)) ?? { health: TYPICAL_HEALTH[state], script: [] };
    registration.health = TYPICAL_HEALTH[state];
    registration.drainingUntil = undefined;
    group.targets.set(key(id, port), registration);
  }

  /** The next DescribeTargetHealth answers for this target, one state per call; the last one then stays. */
  script(arn: string, id: string, port: number, states: readonly TargetState[]): void {
    const group = this.#group(arn);
    const registration = group.targets.get(key(id, port)) ?? { health: TYPICAL_HEALTH.unused, script: [] };
    registration.script.push(...states);
    group.targets.set(key(id, port), registration);
  }

  /**
   * DeregisterTargets. NLB: new flows for the propagation time, draining for the longer of that and the
   * deregistration delay, then gone. ALB: gone at once without an open flow, else draining for the delay.
   */
  deregister(arn: string, id: string, port: number, now = Date.now()): void {
    const group = this.#group(arn);
    const registration = group.targets.get(key(id, port));
    if (!registration) return;
    const delayMs = group.deregistrationDelayMs ?? DEFAULT_DEREGISTRATION_DELAY_MS;
    const type = loadBalancerTypeOf(group.protocol);
    if (type === "application" && !(group.openFlows.get(key(id, port)) ?? 0)) {
      group.targets.delete(key(id, port));
      return;
    }
    registration.health = TYPICAL_HEALTH.draining;
    registration.script = [];
    if (type === "network") {
      registration.newFlowsUntil = now + this.nlbPropagationMs;
      registration.drainingUntil = now + Math.max(delayMs, this.nlbPropagationMs);
    } else {
      registration.drainingUntil = now + delayMs;
    }
  }

  /**
   * Whether the load balancer opens a new flow to this target now: when it is healthy, or a deregistered
   * NLB target whose deregistration has not propagated yet.
   */
  routesNewFlows(arn: string, id: string, port: number, now = Date.now()): boolean {
    const registration = this.#group(arn).targets.get(key(id, port));
    if (!registration) return false;
    if (registration.drainingUntil !== undefined) {
      return registration.newFlowsUntil !== undefined && now < registration.newFlowsUntil &&
        now < registration.drainingUntil;
    }
    return registration.health.State === "healthy";
  }

  /** The downstream traffic reports a flow to this target opening (+1) or ending (-1). */
  countFlow(arn: string, id: string, port: number, change: 1 | -1): void {
    const flows = this.#group(arn).openFlows;
    flows.set(key(id, port), Math.max(0, (flows.get(key(id, port)) ?? 0) + change));
  }

  /** The health ELB reports for a target right now (consumes one scripted step). */
  healthOf(arn: string, id: string, port: number, now = Date.now()): TargetHealth {
    const group = this.#group(arn);
    const registration = group.targets.get(key(id, port));
    if (!registration) return TYPICAL_HEALTH.unused;
    const scripted = registration.script.shift();
    if (scripted) registration.health = TYPICAL_HEALTH[scripted];
    if (registration.drainingUntil !== undefined && now >= registration.drainingUntil) {
      group.targets.delete(key(id, port));
      return TYPICAL_HEALTH.unused;
    }
    return registration.health;
  }

  #guard(operation: string): void {
    if (this.throttled.has(operation)) throw new AwsError("Throttling", "Rate exceeded", 400);
    if (this.denied.has(operation)) {
      throw new AwsError(
        "AccessDenied",
        `User: arn:aws:sts::${this.account}:assumed-role/task-role/sidecar is not authorized to perform: ` +
          `elasticloadbalancing:${operation} because no identity-based policy allows the ` +
          `elasticloadbalancing:${operation} action`,
        403,
      );
    }
  }

  describeTargetGroups(params: URLSearchParams) {
    this.#guard("DescribeTargetGroups");
    const arns = queryList(params, "TargetGroupArns") as string[];
    const missing = arns.filter((arn) => !this.targetGroups.has(arn));
    if (missing.length > 0) {
      throw new AwsError("TargetGroupNotFound", `One or more target groups not found: ${missing.join(", ")}`);
    }
    const groups = arns.length > 0 ? arns.map((arn) => this.targetGroups.get(arn)!) : [...this.targetGroups.values()];
    return {
      TargetGroups: groups.map((g) => ({
        TargetGroupArn: g.arn,
        TargetGroupName: g.name,
        Protocol: g.protocol,
        Port: g.port,
        VpcId: "vpc-0123456789abcdef0",
        TargetType: g.targetType,
        IpAddressType: g.ipAddressType ?? "ipv4",
        HealthCheckProtocol: g.protocol === "HTTPS" ? "HTTPS" : g.protocol === "HTTP" ? "HTTP" : "TCP",
        LoadBalancerArns: g.loadBalancerArns ?? [],
      })),
    };
  }

  /**
   * The attributes per the ELBv2 API reference (`Attributes.member.N` of `Key`/`Value` strings), with the
   * defaults of each load balancer type; `deregistration_delay.timeout_seconds` is the group's delay.
   */
  describeTargetGroupAttributes(params: URLSearchParams) {
    this.#guard("DescribeTargetGroupAttributes");
    const group = this.#group(params.get("TargetGroupArn") ?? "");
    const delaySeconds = (group.deregistrationDelayMs ?? DEFAULT_DEREGISTRATION_DELAY_MS) / 1000;
    const common = { "deregistration_delay.timeout_seconds": String(delaySeconds), "stickiness.enabled": "false" };
    const byType = loadBalancerTypeOf(group.protocol) === "application"
      ? {
        "stickiness.type": "lb_cookie",
        "slow_start.duration_seconds": "0",
        "load_balancing.algorithm.type": "round_robin",
      }
      : {
        "stickiness.type": "source_ip",
        "deregistration_delay.connection_termination.enabled": "false",
        "preserve_client_ip.enabled": group.targetType === "ip" ? "false" : "true",
        "proxy_protocol_v2.enabled": "false",
      };
    return { Attributes: Object.entries({ ...common, ...byType }).map(([Key, Value]) => ({ Key, Value })) };
  }

  describeTargetHealth(params: URLSearchParams) {
    this.#guard("DescribeTargetHealth");
    const arn = params.get("TargetGroupArn") ?? "";
    const group = this.#group(arn);
    const named = (queryList(params, "Targets") as Array<Record<string, string>>).map((t) => ({
      id: t.Id,
      port: t.Port === undefined ? undefined : Number(t.Port),
    }));
    const calls = this.healthCalls.get(arn) ?? [];
    calls.push({ at: Date.now(), targets: named });
    this.healthCalls.set(arn, calls);
    const requested = named.map((t) => ({ id: t.id, port: t.port ?? group.port }));
    for (const target of requested) validateTarget(group, target.id);
    const targets = requested.length > 0 ? requested : [...group.targets.keys()].map((k) => {
      const at = k.lastIndexOf(":");
      return { id: k.slice(0, at), port: Number(k.slice(at + 1)) };
    });
    return {
      TargetHealthDescriptions: targets.map((t) => ({
        Target: { Id: t.id, Port: t.port },
        HealthCheckPort: String(t.port),
        TargetHealth: this.healthOf(arn, t.id, t.port),
      })),
    };
  }
}

function validateTarget(group: TargetGroupRecord, id: string): void {
  const valid = group.targetType === "instance"
    ? /^i-[0-9a-f]{8,17}$/.test(id)
    : group.targetType === "ip"
    ? (group.ipAddressType === "ipv6" ? id.includes(":") : /^\d+\.\d+\.\d+\.\d+$/.test(id))
    : true;
  if (!valid) {
    throw new AwsError("InvalidTarget", `The following targets are not valid for target group ${group.name}: '${id}'`);
  }
}

export type Elbv2Emulator = AwsEmulator<Elbv2State>;

export function startElbv2Emulator(state: Elbv2State = new Elbv2State(), faults?: Faults): Promise<Elbv2Emulator> {
  const framing = awsQueryService({
    ...ELBV2_PROTOCOL,
    operations: {
      DescribeTargetGroups: (params) => state.describeTargetGroups(params),
      DescribeTargetHealth: (params) => state.describeTargetHealth(params),
      DescribeTargetGroupAttributes: (params) => state.describeTargetGroupAttributes(params),
    },
  });
  return startAwsEmulator(framing, state, faults);
}
