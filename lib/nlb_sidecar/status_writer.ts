/**
 * Who wrote a status file, so that `health` judges its own daemon and nobody else. The status can sit
 * where other sidecars write too: /dev/shm is the host's under `ipcMode: host` and the task's under
 * `ipcMode: task` ("all containers within the specified task share the same IPC resources", ECS task
 * definition parameters), and one volume can be mounted into several sidecars; an earlier process of
 * the same container can also have left one. So every status records its writer (its container and
 * the process in it), and `health` trusts a status only from a running process of its own container.
 * @module
 */
import type { Status } from "../status_file.ts";

/** Who wrote a status, as the status records it (`details.writer`; the pid is the status's own `pid`). */
export interface StatusWriter {
  /** {@link containerKey} of the writer's container. */
  readonly container: string;
  /** When the writing process started ({@link processStart}); absent where /proc could not be read. */
  readonly startTicks?: number;
}

/**
 * A key for the container, which the daemon and the `health` process that ECS starts in the same
 * container later both compute alike, without the network: 16 hex digits of the SHA-256 of two facts.
 *
 * - `ECS_CONTAINER_METADATA_URI_V4`, which ECS injects into each container of a task (agent 1.39.0 and
 *   later on EC2, Fargate platform 1.4.0 and later, ECS Managed Instances), and whose path is the
 *   container's own: `${ECS_CONTAINER_METADATA_URI_V4}` "returns metadata for the container"
 *   (docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4.html). `health` sees
 *   the same value: ECS's `healthCheck` is Docker's HEALTHCHECK, run inside the container like
 *   `docker exec`, with the container's environment. It is read from the environment, not from
 *   `--metadata-uri`, so a flag on the daemon's command that the health check's command lacks cannot
 *   split the two.
 * - The hostname, shared by every process of the container (one UTS namespace). It is no key on its
 *   own: in awsvpc mode all containers of a task have the task's hostname (ECS's `hostname` parameter is
 *   not supported there), in host mode the instance's, and operators can set it. Beside the URI it keeps
 *   containers apart where the URI is the same for all (set by hand outside ECS, or by a local metadata
 *   emulator): Docker sets the hostname to the container's id unless told otherwise.
 *
 * Not used: /proc/self/cgroup, which reads `0::/` in every container under cgroup v2 with a private
 * cgroup namespace (Docker's default there); /proc/self/mountinfo, whose container paths are Docker's
 * layout and not containerd's or Fargate's. Two containers of one host get one key with a chance of
 * about 1 in 2^64 per pair.
 */
export async function containerKey(
  env: Readonly<Record<string, string | undefined>>,
  hostname: string = ownHostname(),
): Promise<string> {
  const facts = `ECS_CONTAINER_METADATA_URI_V4=${env.ECS_CONTAINER_METADATA_URI_V4 ?? ""}\nhostname=${hostname}`;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(facts)));
  return Array.from(digest.subarray(0, 8), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The hostname, or "" where it cannot be read (no `sys` permission): the URI alone then. */
function ownHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}

/**
 * When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat): a pid alone
 * names no process for long, and in a container the daemon is pid 1 again after every restart.
 * `"exited"` when /proc works but has no such process; `undefined` when it cannot tell (no /proc, no
 * permission: Deno reads /proc only for a process that holds every permission).
 */
export async function processStart(pid: number): Promise<number | "exited" | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[22 - 3]);
    return Number.isSafeInteger(ticks) ? ticks : undefined;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) return undefined;
    return await procWorks() ? "exited" : undefined;
  }
}

async function procWorks(): Promise<boolean> {
  try {
    await Deno.stat("/proc/self/stat");
    return true;
  } catch {
    return false;
  }
}

/** This process as the writer of the statuses it reports, from its environment (see {@link containerKey}). */
export async function thisWriter(env: Readonly<Record<string, string | undefined>>): Promise<StatusWriter> {
  const start = await processStart(Deno.pid);
  return { container: await containerKey(env), startTicks: typeof start === "number" ? start : undefined };
}

/**
 * Why `status` is not the status of this container's running daemon, or `undefined` when it is.
 * `container` is the reader's {@link containerKey}; `writerStart` is what {@link processStart} says now
 * about the status's pid. Where the process cannot be checked, the container alone decides: `health`
 * must not fail a healthy task because /proc is unusual.
 */
export function notOwnStatus(
  status: Status,
  container: string,
  writerStart: number | "exited" | undefined,
): string | undefined {
  const writer = (status.details as { writer?: Partial<StatusWriter> }).writer;
  if (typeof writer?.container !== "string") {
    return "it does not say which container wrote it (an older version's file, or another program's)";
  }
  if (writer.container !== container) {
    return `it was written by the sidecar of another container (${writer.container}; this one is ${container}), ` +
      "which shares the file: give each sidecar a STATUS_FILE of its own";
  }
  if (writer.startTicks === undefined || writerStart === undefined) return undefined;
  if (writerStart === "exited") return `it was written by process ${status.pid}, which has exited: a stale file`;
  if (writerStart !== writer.startTicks) {
    return `it was written by an earlier process ${status.pid} of this container (the pid is another process's ` +
      "now): a stale file";
  }
  return undefined;
}
