/**
 * A read-only Docker Engine API on loopback TCP, for showing the sentry's `--dry-run` where no real
 * engine can run (not root, no dockerd): it lists and inspects a scripted set of containers and refuses
 * every change with 501, which a dry run never asks for.
 * @module
 */
import { ECS_LABELS } from "../lib/network_sentry/docker.ts";
import { json, type SimRequest, type SimServer, startSimServer } from "./http_server.ts";

export interface FakeContainer {
  readonly id: string;
  readonly name: string;
  status: string;
  restartCount: number;
  startedAt: string;
  restartPolicy: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface DockerApiEmulator extends SimServer {
  /** `tcp://127.0.0.1:<port>`, for `--docker-host`. */
  readonly host: string;
  readonly containers: FakeContainer[];
}

/** An ECS task container's labels, as the agent sets them. */
export function ecsLabels(cluster: string, family: string, containerName: string): Record<string, string> {
  return {
    [ECS_LABELS.cluster]: cluster,
    [ECS_LABELS.taskArn]: `arn:aws:ecs:eu-test-1:123456789012:task/${cluster}/${family}`,
    [ECS_LABELS.family]: family,
    [ECS_LABELS.version]: "1",
    [ECS_LABELS.containerName]: containerName,
  };
}

/** A container as ECS leaves one running: restart policy `no`, never restarted, started at `startedAt`. */
export function runningContainer(
  id: string,
  name: string,
  labels: Readonly<Record<string, string>>,
  startedAt: string,
): FakeContainer {
  return { id, name, status: "running", restartCount: 0, startedAt, restartPolicy: "no", labels };
}

export interface DockerApiEmulatorOptions {
  /** Runs before each request is answered, which waits for it: how a test acts while the sentry is mid-call. */
  readonly beforeAnswer?: (request: SimRequest) => Promise<void> | void;
}

export async function startDockerApiEmulator(
  containers: FakeContainer[],
  options: DockerApiEmulatorOptions = {},
): Promise<DockerApiEmulator> {
  const find = (idOrName: string) => containers.find((c) => c.id === idOrName || c.name === idOrName);
  const server = await startSimServer({
    handle: async (request) => {
      await options.beforeAnswer?.(request);
      if (request.method !== "GET") return json(501, { message: "read-only Docker API emulator" });
      if (request.path === "/containers/json") {
        const filters = JSON.parse(request.query.get("filters") ?? "{}") as { label?: string[] };
        const wanted = filters.label ?? [];
        return json(200, containers.filter((c) => wanted.every((l) => l in c.labels)).map((c) => ({ Id: c.id })));
      }
      const inspect = request.path.match(/^\/containers\/([^/]+)\/json$/);
      const container = inspect && find(decodeURIComponent(inspect[1]));
      if (!container) return json(404, { message: `No such container: ${inspect?.[1] ?? request.path}` });
      return json(200, {
        Id: container.id,
        Name: `/${container.name}`,
        RestartCount: container.restartCount,
        State: { Status: container.status, StartedAt: container.startedAt },
        HostConfig: { RestartPolicy: { Name: container.restartPolicy, MaximumRetryCount: 0 } },
        Config: { Labels: container.labels },
      });
    },
  });
  return Object.assign(server, { host: `tcp://127.0.0.1:${server.port}`, containers });
}
