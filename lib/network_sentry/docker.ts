/**
 * The Docker Engine API as the sentry needs it: observe the ECS containers and the agent, and the few
 * calls that change them. Every call has a hard timeout and follows the shutdown signal; a container
 * that disappeared under a call is reported as {@link isVanished}.
 * @module
 */
import { describeError } from "../retry.ts";
import type { DockerAddress } from "./docker_address.ts";
import type { AgentContainer, Observation, ObservedContainer, RestartPolicy } from "./machine.ts";
import { DOCKER_PARALLELISM, mapBounded } from "./parallel.ts";

export const ECS_LABELS = {
  cluster: "com.amazonaws.ecs.cluster",
  taskArn: "com.amazonaws.ecs.task-arn",
  containerName: "com.amazonaws.ecs.container-name",
  family: "com.amazonaws.ecs.task-definition-family",
  version: "com.amazonaws.ecs.task-definition-version",
} as const;

/** Any single call but `stop`; dockerd answers these in milliseconds unless it is stuck. */
const CALL_TIMEOUT_MS = 30_000;
/** `stop` waits for the container's own stop timeout, which ECS caps at 120 s. */
const STOP_TIMEOUT_MS = 150_000;

interface ContainerSummary {
  readonly Id: string;
}
/** The part of `GET /containers/{id}/json` the sentry reads. */
export interface ContainerInspect {
  readonly Id: string;
  readonly Name: string;
  readonly RestartCount: number;
  readonly State: {
    readonly Status: string;
    readonly StartedAt: string;
    readonly Health?: { readonly Status: string };
  };
  readonly HostConfig: {
    readonly RestartPolicy?: Partial<RestartPolicy>;
    readonly LogConfig?: { readonly Type?: string; readonly Config?: Readonly<Record<string, string>> | null };
  };
  readonly Config: { readonly Labels?: Readonly<Record<string, string>> | null };
}

/** Docker answered with an error status; `message` is the daemon's own explanation. */
export class DockerApiError extends Error {
  constructor(readonly statusCode: number, request: string, message: string) {
    super(`${request}: HTTP ${statusCode}: ${message}`);
    this.name = "DockerApiError";
  }
}

/**
 * The Engine API over Deno's fetch, on a unix socket or a plain TCP port. The connection is always
 * explicit, so an HTTP(S)_PROXY in the environment never captures Docker traffic. (dockerode pulls in
 * ssh2 and gRPC and alone cost ~20 MiB of the 64 MiB budget.)
 */
export class DockerApi implements Disposable {
  readonly #client: Deno.HttpClient;

  constructor(address: DockerAddress) {
    this.#client = Deno.createHttpClient({
      proxy: "socketPath" in address
        ? { transport: "unix", path: address.socketPath }
        : { transport: "tcp", hostname: address.host, port: address.port },
    });
  }

  /** One call; the parsed JSON answer, or `undefined` for an empty or non-JSON one. Error statuses throw {@link DockerApiError}. */
  async call<T>(method: string, path: string, options: { body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
    const response = await fetch(`http://docker${path}`, {
      method,
      client: this.#client,
      signal: options.signal,
      headers: options.body === undefined ? {} : { "content-type": "application/json" },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await response.text();
    if (response.status >= 300) {
      let message = text.trim();
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {
        // not JSON: keep the text
      }
      throw new DockerApiError(response.status, `${method} ${path.split("?")[0]}`, message);
    }
    const json = response.headers.get("content-type")?.includes("application/json");
    return (json && text ? JSON.parse(text) : undefined) as T;
  }

  [Symbol.dispose](): void {
    this.#client.close();
  }
}

/** The container is gone (404): it was removed while the sentry worked on it. */
export function isVanished(error: unknown): boolean {
  return error instanceof DockerApiError && error.statusCode === 404;
}

/**
 * Log fields for a failed call. Named `detail`, never `message`: a `message` field would replace the
 * rendered log message in JSON lines.
 */
export function errorFields(error: unknown): { detail: string; error: string; status?: number } {
  const { message, ...rest } = describeError(error);
  return { detail: message, ...rest, ...(error instanceof DockerApiError ? { status: error.statusCode } : {}) };
}

/** 304/409 answers that mean the container is already in the state asked for. */
function isAlreadyDone(error: unknown): boolean {
  if (!(error instanceof DockerApiError)) return false;
  return error.statusCode === 304 ||
    (error.statusCode === 409 && /already paused|is not paused|not running/i.test(error.message));
}

export class DockerHost {
  readonly #api: DockerApi;

  constructor(address: DockerAddress, private readonly signal?: AbortSignal) {
    this.#api = new DockerApi(address);
  }

  /** The agent (by name) and every ECS-labelled container in any state, inspected. */
  async observe(agentName: string): Promise<Observation> {
    // By name only: Docker would also accept an ID prefix, which must never be taken for the agent.
    const found = await this.#inspectOrUndefined(agentName);
    const agent = found?.Name === `/${agentName}` ? found : undefined;
    const filters = encodeURIComponent(JSON.stringify({ label: [ECS_LABELS.cluster] }));
    const summaries = await this.#call<ContainerSummary[]>("GET", `/containers/json?all=1&filters=${filters}`);
    // Each inspect (several KiB of JSON) is cut down to the fields the decisions read as soon as it
    // arrives: at 300 containers the whole answers would cost tens of MiB.
    const observed = await mapBounded(
      summaries.filter((s) => s.Id !== agent?.Id),
      DOCKER_PARALLELISM,
      async (s) => {
        const inspect = await this.#inspectOrUndefined(s.Id);
        return inspect && toObserved(inspect);
      },
    );
    return {
      agent: agent && toAgent(agent),
      containers: observed.filter((c): c is ObservedContainer => c !== undefined),
    };
  }

  async pause(id: string): Promise<void> {
    await this.#call("POST", `/containers/${id}/pause`).catch(ignoreAlreadyDone);
  }

  async unpause(id: string): Promise<void> {
    await this.#call("POST", `/containers/${id}/unpause`).catch(ignoreAlreadyDone);
  }

  async setRestartPolicy(id: string, policy: RestartPolicy): Promise<void> {
    await this.#call("POST", `/containers/${id}/update`, { RestartPolicy: policy });
  }

  /** Stops with the container's own stop timeout (ECS sets it from the task definition), then removes it. */
  async stopAndRemove(id: string): Promise<void> {
    await this.#call("POST", `/containers/${id}/stop`, undefined, STOP_TIMEOUT_MS).catch(ignoreAlreadyDone);
    await this.#call("DELETE", `/containers/${id}?force=1`);
  }

  #call<T>(method: string, path: string, body?: unknown, timeoutMs = CALL_TIMEOUT_MS): Promise<T> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = this.signal ? AbortSignal.any([this.signal, timeout]) : timeout;
    return this.#api.call<T>(method, path, { body, signal });
  }

  async #inspectOrUndefined(idOrName: string): Promise<ContainerInspect | undefined> {
    try {
      return await this.#call<ContainerInspect>("GET", `/containers/${encodeURIComponent(idOrName)}/json`);
    } catch (error) {
      if (isVanished(error)) return undefined;
      throw error;
    }
  }
}

function ignoreAlreadyDone(error: unknown): void {
  if (!isAlreadyDone(error)) throw error;
}

function toAgent(inspect: ContainerInspect): AgentContainer {
  return { id: inspect.Id, name: inspect.Name.replace(/^\//, ""), state: inspect.State.Status };
}

/** A container as the sentry's decisions see it. */
export function toObserved(inspect: ContainerInspect): ObservedContainer {
  const labels = inspect.Config.Labels ?? {};
  const policy = inspect.HostConfig.RestartPolicy ?? {};
  return {
    id: inspect.Id,
    name: inspect.Name.replace(/^\//, ""),
    state: inspect.State.Status,
    cluster: labels[ECS_LABELS.cluster] ?? "",
    taskArn: labels[ECS_LABELS.taskArn] ?? "",
    family: labels[ECS_LABELS.family] ?? "",
    containerName: labels[ECS_LABELS.containerName] ?? "",
    restartCount: inspect.RestartCount,
    // Docker reports an unset policy as an empty name, which means "no".
    restartPolicy: { Name: policy.Name || "no", MaximumRetryCount: policy.MaximumRetryCount ?? 0 },
    startedAt: inspect.State.StartedAt,
    ...(inspect.State.Health ? { health: inspect.State.Health.Status } : {}),
    ...(isAwslogsBlocking(inspect.HostConfig.LogConfig) ? { awslogsBlocking: true } : {}),
  };
}

/**
 * Docker's awslogs driver blocks unless `mode` is `non-blocking` (Docker's default; ECS sets `mode` from the
 * task definition or the account's defaultLogDriverMode, non-blocking since June 2025:
 * https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-account-settings.html). In blocking mode
 * the container cannot start while CloudWatch Logs is unreachable.
 */
function isAwslogsBlocking(logConfig: ContainerInspect["HostConfig"]["LogConfig"]): boolean {
  return logConfig?.Type === "awslogs" && logConfig.Config?.mode !== "non-blocking";
}
