/**
 * ECS task metadata endpoint v4 emulator: `GET /v4/<id>` describes the calling container and
 * `GET /v4/<id>/task` the task, from a {@link TaskMetadata} the test can change at any time.
 *
 * Restart policies as the agent reports them: a container whose ECS restart policy is enabled carries
 * `RestartCount` (0 until the agent restarts it), every other container has no such field (amazon-ecs-agent
 * agent/handlers/v4/response.go: set only when `RestartPolicyEnabled()`, omitted otherwise).
 * @module
 */
import type { ContainerMetadata, TaskMetadata } from "../lib/ecs_metadata.ts";
import { Faults } from "./faults.ts";
import { json, type SimServer, startSimServer } from "./http_server.ts";

export interface TaskMetadataEmulator extends SimServer {
  /** The value to put in `ECS_CONTAINER_METADATA_URI_V4`. */
  readonly metadataUri: string;
  /** The task being described; replace it to change what the endpoint answers. */
  task: TaskMetadata;
  /** What the agent records when its restart policy restarts container `name`: one more `RestartCount`. */
  recordRestart(name: string): void;
}

export interface TaskMetadataOptions {
  readonly task: TaskMetadata;
  /** Which container of the task is "calling" (the sidecar). */
  readonly selfName: string;
  /** Containers whose ECS restart policy is enabled: only they report `RestartCount`. */
  readonly restartPolicyEnabled?: readonly string[];
  readonly faults?: Faults;
}

export async function startTaskMetadataEmulator(options: TaskMetadataOptions): Promise<TaskMetadataEmulator> {
  const id = `${crypto.randomUUID().replaceAll("-", "")}-1234567890`;
  const state = { task: options.task };
  const restarts = new Map((options.restartPolicyEnabled ?? []).map((name) => [name, 0]));
  const described = (container: ContainerMetadata): ContainerMetadata => {
    const { RestartCount: _given, ...rest } = container;
    const count = restarts.get(container.Name);
    return count === undefined ? rest : { ...rest, RestartCount: count };
  };
  const self = (): ContainerMetadata | undefined => state.task.Containers.find((c) => c.Name === options.selfName);
  const server = await startSimServer({
    faults: options.faults ?? new Faults(),
    handle: (request) => {
      if (request.method !== "GET") return { status: 405, body: "Method Not Allowed" };
      if (request.path === `/v4/${id}/task`) {
        // An answer cut short (`{}`, a task without Containers) is served as the test set it.
        const containers = Array.isArray(state.task.Containers) ? state.task.Containers.map(described) : undefined;
        return json(200, containers ? { ...state.task, Containers: containers } : state.task);
      }
      if (request.path === `/v4/${id}`) {
        const container = self();
        return container ? json(200, described(container)) : json(404, { error: "container not found" });
      }
      return { status: 404, body: "404 page not found" };
    },
  });
  return Object.defineProperties(server, {
    metadataUri: { value: `${server.url}/v4/${id}`, enumerable: true },
    recordRestart: {
      value: (name: string) => {
        const count = restarts.get(name);
        if (count === undefined) throw new Error(`${name} has no restart policy: ECS would not restart it`);
        restarts.set(name, count + 1);
      },
      enumerable: true,
    },
    task: {
      get: () => state.task,
      set: (value: TaskMetadata) => {
        state.task = value;
      },
      enumerable: true,
    },
  }) as TaskMetadataEmulator;
}
