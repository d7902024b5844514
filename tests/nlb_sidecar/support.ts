/**
 * In-process helpers for the nlb-sidecar tests: the real SDK clients pointed at an emulated world,
 * discovery with fast backoff, and a logger whose lines the test can read.
 */
import { monotonicNow } from "../../lib/clock.ts";
import { metadataClient } from "../../lib/ecs_metadata.ts";
import { type SidecarClients, sidecarClients } from "../../lib/nlb_sidecar/clients.ts";
import { discover, type Discovered } from "../../lib/nlb_sidecar/discovery.ts";
import type { EcsWorld, WorldNetworkMode, WorldOptions } from "../../sim/ecs_world.ts";

/**
 * The SDK reads `AWS_ENDPOINT_URL_<SERVICE>` from the process environment, as it would in a task; the
 * tests in a file run one after another, so each world sets its own.
 */
export function pointSdkAt(world: EcsWorld): void {
  for (const [name, value] of Object.entries(world.env)) {
    if (name.startsWith("AWS_ENDPOINT_URL_")) Deno.env.set(name, value);
  }
}

export type TargetProtocol = "TCP" | "TLS" | "UDP" | "TCP_UDP" | "HTTP" | "HTTPS";

/** One task in a one-target-group world, and where ECS registered it. */
export interface TargetCase {
  readonly networkMode: WorldNetworkMode;
  readonly targetType: "ip" | "instance";
  readonly ipAddressType: "ipv4" | "ipv6";
  readonly protocol: TargetProtocol;
  /** The DescribeTargetHealth Id and Port the sidecar must use. */
  readonly id: string;
  readonly port: number;
}

/**
 * The target Id per network mode, target type and address family, written out by hand rather than
 * derived by the rules discovery follows, so that a mistake shared by discovery and the emulated world
 * cannot pass: awsvpc tasks are their own ENI's address; bridge and host tasks are the instance (id, or
 * its private address for ip groups).
 */
const EXPECTED_ID: Readonly<
  Record<WorldNetworkMode, Partial<Record<TargetCase["targetType"], Record<TargetCase["ipAddressType"], string>>>>
> = {
  awsvpc: { ip: { ipv4: "10.0.1.23", ipv6: "2600:1f18:abcd:1201::17" } },
  bridge: {
    instance: { ipv4: "i-0abc1234def567890", ipv6: "i-0abc1234def567890" },
    ip: { ipv4: "10.0.5.17", ipv6: "2600:1f18:abcd:1205::5" },
  },
  host: {
    instance: { ipv4: "i-0abc1234def567890", ipv6: "i-0abc1234def567890" },
    ip: { ipv4: "10.0.5.17", ipv6: "2600:1f18:abcd:1205::5" },
  },
};

/**
 * The target port per network mode and protocol, by hand as well. The world's container port is 8080;
 * in bridge mode the agent mapped it to the dynamic host ports 32768 (tcp) and 32769 (udp), and ECS
 * registers the one that carries the group's protocol (tcp first for TCP_UDP).
 */
const EXPECTED_PORT: Readonly<Record<WorldNetworkMode, Readonly<Record<TargetProtocol, number>>>> = {
  awsvpc: { TCP: 8080, TLS: 8080, UDP: 8080, TCP_UDP: 8080, HTTP: 8080, HTTPS: 8080 },
  bridge: { TCP: 32768, TLS: 32768, UDP: 32769, TCP_UDP: 32768, HTTP: 32768, HTTPS: 32768 },
  host: { TCP: 8080, TLS: 8080, UDP: 8080, TCP_UDP: 8080, HTTP: 8080, HTTPS: 8080 },
};

/** Every network mode x valid target type x address family x NLB and ALB protocol. */
export const TARGET_CASES: readonly TargetCase[] = Object.entries(EXPECTED_ID).flatMap(([networkMode, types]) =>
  Object.entries(types).flatMap(([targetType, ids]) =>
    Object.entries(ids).flatMap(([ipAddressType, id]) =>
      Object.entries(EXPECTED_PORT[networkMode as WorldNetworkMode]).map(([protocol, port]) => ({
        networkMode: networkMode as WorldNetworkMode,
        targetType: targetType as TargetCase["targetType"],
        ipAddressType: ipAddressType as TargetCase["ipAddressType"],
        protocol: protocol as TargetProtocol,
        id,
        port,
      }))
    )
  )
);

/** The cases of one network mode, target type and address family, by a name for the test that runs them. */
export function byTaskKind(cases: readonly TargetCase[]): Map<string, TargetCase[]> {
  const groups = new Map<string, TargetCase[]>();
  for (const c of cases) {
    const name = `${c.networkMode} task, ${c.targetType} targets, ${c.ipAddressType}`;
    groups.set(name, [...groups.get(name) ?? [], c]);
  }
  return groups;
}

/** The world of one target case: one target group of the case's type, family and protocol. */
export function targetCaseWorld(c: TargetCase): WorldOptions {
  return {
    networkMode: c.networkMode,
    targetGroups: [{ protocol: c.protocol, targetType: c.targetType, ipAddressType: c.ipAddressType }],
  };
}

export interface DiscoveryRun extends Discovered {
  /** How often discovery asked for the EC2 client (loaded lazily, only for ip targets of bridge/host). */
  readonly ec2Loads: number;
  readonly retries: string[];
}

export async function discoverIn(
  world: EcsWorld,
  options: { targetContainerName?: string; timeoutMs?: number; region?: string; signal?: AbortSignal } = {},
): Promise<DiscoveryRun> {
  pointSdkAt(world);
  let ec2Loads = 0;
  const retries: string[] = [];
  const result = await discover({
    metadata: metadataClient(world.env.ECS_CONTAINER_METADATA_URI_V4, { backoff: { baseMs: 5, capMs: 40 } }),
    connect: (region): SidecarClients => {
      const clients = sidecarClients(region, world.env, 2_000);
      return {
        ...clients,
        ec2: () => {
          ec2Loads++;
          return clients.ec2();
        },
      };
    },
    region: options.region,
    targetContainerName: options.targetContainerName,
    deadline: monotonicNow() + (options.timeoutMs ?? 10_000),
    signal: options.signal,
    backoff: { baseMs: 5, capMs: 40 },
    onRetry: (step) => retries.push(step),
  });
  return { ...result, ec2Loads, retries };
}

export { type CapturedLog, captureLog } from "../capture_log.ts";

/** A loopback TCP server standing in for the application: its port is the target port. */
export interface LoopbackApp {
  readonly port: number;
  /** Server sides of the connections accepted so far. */
  readonly accepted: Deno.TcpConn[];
  /** Opens `count` client connections and waits until the server side has accepted them all. */
  connect(count: number): Promise<Deno.TcpConn[]>;
  close(): Promise<void>;
}

export function listenLoopback(): LoopbackApp {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.TcpConn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) accepted.push(conn);
    } catch {
      // the listener was closed
    }
  })();
  return {
    port: listener.addr.port,
    accepted,
    async connect(count) {
      const expected = accepted.length + count;
      const clients = await Promise.all(
        Array.from({ length: count }, () => Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })),
      );
      while (accepted.length < expected) await new Promise((r) => setTimeout(r, 5));
      return clients;
    },
    async close() {
      for (const conn of accepted) {
        try {
          conn.close();
        } catch {
          // closed by the test already
        }
      }
      listener.close();
      await accepting;
    },
  };
}
