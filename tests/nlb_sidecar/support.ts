/**
 * In-process helpers for the nlb-sidecar tests: the real SDK clients pointed at an emulated world,
 * discovery with fast backoff, and a logger whose lines the test can read.
 */
import { metadataClient } from "../../lib/ecs_metadata.ts";
import { type Logger, setupLogging } from "../../lib/log.ts";
import { type SidecarClients, sidecarClients } from "../../lib/nlb_sidecar/clients.ts";
import { discover, type Discovered } from "../../lib/nlb_sidecar/discovery.ts";
import type { EcsWorld } from "../../sim/ecs_world.ts";

/**
 * The SDK reads `AWS_ENDPOINT_URL_<SERVICE>` from the process environment, as it would in a task; the
 * tests in a file run one after another, so each world sets its own.
 */
export function pointSdkAt(world: EcsWorld): void {
  for (const [name, value] of Object.entries(world.env)) {
    if (name.startsWith("AWS_ENDPOINT_URL_")) Deno.env.set(name, value);
  }
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
    deadline: Date.now() + (options.timeoutMs ?? 10_000),
    signal: options.signal,
    backoff: { baseMs: 5, capMs: 40 },
    onRetry: (step) => retries.push(step),
  });
  return { ...result, ec2Loads, retries };
}

export interface CapturedLog {
  readonly log: Logger;
  /** Parsed JSON lines, in order. */
  readonly lines: Array<Record<string, unknown>>;
}

export function captureLog(): CapturedLog {
  const lines: Array<Record<string, unknown>> = [];
  const log = setupLogging({
    role: "nlb-sidecar",
    level: "debug",
    format: "json",
    write: (line) => lines.push(JSON.parse(line)),
  });
  return { log, lines };
}

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
