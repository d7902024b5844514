/**
 * ECS task metadata endpoint v4 emulator: `GET /v4/<id>` describes the calling container and
 * `GET /v4/<id>/task` the task, from a {@link TaskMetadata} the test can change at any time.
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
}

export interface TaskMetadataOptions {
  readonly task: TaskMetadata;
  /** Which container of the task is "calling" (the sidecar). */
  readonly selfName: string;
  readonly faults?: Faults;
}

export async function startTaskMetadataEmulator(options: TaskMetadataOptions): Promise<TaskMetadataEmulator> {
  const id = `${crypto.randomUUID().replaceAll("-", "")}-1234567890`;
  const state = { task: options.task };
  const self = (): ContainerMetadata | undefined => state.task.Containers.find((c) => c.Name === options.selfName);
  const server = await startSimServer({
    faults: options.faults ?? new Faults(),
    handle: (request) => {
      if (request.method !== "GET") return { status: 405, body: "Method Not Allowed" };
      if (request.path === `/v4/${id}/task`) return json(200, state.task);
      if (request.path === `/v4/${id}`) {
        const container = self();
        return container ? json(200, container) : json(404, { error: "container not found" });
      }
      return { status: 404, body: "404 page not found" };
    },
  });
  return Object.defineProperties(server, {
    metadataUri: { value: `${server.url}/v4/${id}`, enumerable: true },
    task: {
      get: () => state.task,
      set: (value: TaskMetadata) => {
        state.task = value;
      },
      enumerable: true,
    },
  }) as TaskMetadataEmulator;
}
