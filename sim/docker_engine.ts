/**
 * A private, real Docker engine for tests, benchmarks and the demo: `dockerd` on its own socket, data
 * root and exec root in a temp folder (never the system's /var/run/docker.sock), a busybox image
 * imported from the host's static busybox (nothing is pulled), and helpers that create the ECS agent
 * container and ECS-labelled task containers. `close()` removes everything it started.
 * @module
 */
import { join } from "node:path";
import { type ContainerInspect, DockerApi, ECS_LABELS, isVanished, toObserved } from "../lib/network_sentry/docker.ts";
import type { ObservedContainer } from "../lib/network_sentry/machine.ts";

export const IMAGE = "busybox:local";
const BUSYBOX = "/bin/busybox";
const APPLETS = ["sh", "sleep", "true", "false", "echo", "cat", "kill"];

/** Why no engine can be started here, or `undefined` when one can. */
export async function dockerUnavailableReason(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "Docker tests need Linux";
  if (Deno.uid() !== 0) return "Docker tests need root (dockerd runs privately as root)";
  for (const tool of ["dockerd", "tar"]) {
    const found = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null", stderr: "null" })
      .output().then((o) => o.success, () => false);
    if (!found) return `${tool} is not installed (apt-get install docker.io)`;
  }
  try {
    await Deno.stat(BUSYBOX);
  } catch {
    return `${BUSYBOX} is missing (apt-get install busybox-static)`;
  }
  return undefined;
}

export interface TaskOptions {
  readonly name: string;
  readonly cluster?: string;
  readonly family: string;
  readonly containerName: string;
  /** `healthy` runs until stopped (exit 143 on SIGTERM, like most services); `crash` exits 3 after `crashAfter` s. */
  readonly behaviour: "healthy" | "crash";
  readonly crashAfter?: number;
  /** Adds a Docker health check that passes at once. */
  readonly healthCheck?: boolean;
  readonly restartPolicy?: string;
  /**
   * Seconds a `docker stop` takes: the container ignores SIGTERM and Docker kills it after its stop
   * timeout, as ECS sets it from `stopTimeout` (30 s by default for ECS containers). It runs until
   * {@link DockerEngine.crash} makes it exit 3 (whatever `behaviour` says).
   */
  readonly stopTakes?: number;
  /**
   * `awslogs` creates the container with Docker's awslogs log driver (blocking unless `mode` is
   * `non-blocking`); it is then only created, not started: the driver cannot reach CloudWatch from a
   * test, and Docker refuses to start it, as on a host whose region is unreachable.
   */
  readonly awslogs?: { readonly mode?: "blocking" | "non-blocking" };
}

/** A container as the sentry sees it, with short names for what tests and the demo check most. */
export interface ContainerState extends ObservedContainer {
  /** `state`: running, paused, restarting, exited... */
  readonly status: string;
  /** `restartPolicy.Name`. */
  readonly policy: string;
}

export interface DockerEngine extends AsyncDisposable {
  /** `unix:///…/d.sock`, for `--docker-host`. */
  readonly host: string;
  readonly socketPath: string;
  createAgent(name?: string): Promise<string>;
  createTask(options: TaskOptions): Promise<string>;
  /**
   * Makes a running `healthy` container exit non-zero now, from inside (as a crash, not a `docker stop`):
   * SIGUSR1 ends one that ignores SIGTERM (`stopTakes`), SIGTERM the others (PID 1 ignores signals it has
   * no handler for, so each container only reacts to the one it traps).
   */
  crash(idOrName: string): Promise<void>;
  /** Pauses a container, as an operator would with `docker pause`. */
  pause(idOrName: string): Promise<void>;
  /** A container without ECS labels, which the sentry must never touch. */
  createUnlabelled(name: string): Promise<string>;
  /** `undefined` once the container is gone. */
  state(idOrName: string): Promise<ContainerState | undefined>;
  /** Every container, by name. */
  states(): Promise<Map<string, ContainerState>>;
  /** Removes every container (between tests). */
  removeAll(): Promise<void>;
  /** Stops the daemon (containers are stopped with it) and starts it again on the same data root. */
  restartDaemon(): Promise<void>;
  stopDaemon(): Promise<void>;
  startDaemon(): Promise<void>;
  close(): Promise<void>;
}

export interface EngineOptions {
  /** Where images and containers live; by default a folder of the engine's own (benchmarks choose a disk). */
  readonly dataRoot?: string;
}

/** Starts a private engine and imports the busybox image. */
export async function startDockerEngine(options: EngineOptions = {}): Promise<DockerEngine> {
  const reason = await dockerUnavailableReason();
  if (reason) throw new Error(`cannot start a Docker engine: ${reason}`);
  // Short: unix socket paths (containerd's under the exec root too) are limited to 108 bytes.
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "nsd" });
  const socketPath = join(dir, "d.sock");
  const api = new DockerApi({ socketPath });
  let daemon: Deno.ChildProcess | undefined;

  const startDaemon = async () => {
    const args = [
      `--host=unix://${socketPath}`,
      `--data-root=${options.dataRoot ?? join(dir, "data")}`,
      `--exec-root=${join(dir, "x")}`,
      `--pidfile=${join(dir, "d.pid")}`,
      "--bridge=none",
      "--iptables=false",
      "--ip-masq=false",
    ];
    daemon = new Deno.Command("sh", {
      args: ["-c", `exec dockerd "$@" >>${join(dir, "dockerd.log")} 2>&1`, "dockerd", ...args],
      stdin: "null",
    }).spawn();
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (await api.call("GET", "/_ping").then(() => true, () => false)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    const log = await Deno.readTextFile(join(dir, "dockerd.log")).catch(() => "");
    throw new Error(`dockerd did not answer within 30 s:\n${log.slice(-2000)}`);
  };
  const stopDaemon = async () => {
    if (!daemon) return;
    const exited = daemon.status;
    try {
      daemon.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        daemon?.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 20_000);
    await exited;
    clearTimeout(timer);
    daemon = undefined;
  };

  const create = async ({ name, ...options }: { name: string } & Record<string, unknown>) => {
    const body = { Image: IMAGE, StopTimeout: 1, ...options };
    const { Id } = await api.call<{ Id: string }>("POST", `/containers/create?name=${name}`, { body });
    return Id;
  };
  const run = async (options: { name: string } & Record<string, unknown>) => {
    const id = await create(options);
    await api.call("POST", `/containers/${id}/start`);
    return id;
  };
  const hostConfig = (policy = "no") => ({ NetworkMode: "none", RestartPolicy: { Name: policy } });
  // sh as PID 1 ignores SIGTERM unless trapped; `wait` lets the trap run at once.
  const untilStopped = ["sh", "-c", "trap 'exit 143' TERM; sleep 100000 & wait"];

  const state = async (idOrName: string): Promise<ContainerState | undefined> => {
    try {
      const observed = toObserved(await api.call<ContainerInspect>("GET", `/containers/${idOrName}/json`));
      return { ...observed, status: observed.state, policy: observed.restartPolicy.Name };
    } catch (error) {
      if (isVanished(error)) return undefined;
      throw error;
    }
  };
  const removeAll = async () => {
    const all = await api.call<Array<{ Id: string }>>("GET", "/containers/json?all=1");
    await Promise.all(all.map((c) => api.call("DELETE", `/containers/${c.Id}?force=1`).catch(() => {})));
  };

  const close = async () => {
    if (daemon) await removeAll().catch(() => {});
    await stopDaemon();
    await killLeftovers(dir);
    await unmountUnder(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    api[Symbol.dispose]();
  };

  try {
    await startDaemon();
    await importBusybox(dir, socketPath);
  } catch (error) {
    await close();
    throw error;
  }

  return {
    host: `unix://${socketPath}`,
    socketPath,
    createAgent: (name = "ecs-agent") => run({ name, Cmd: untilStopped, HostConfig: hostConfig("always") }),
    createTask: (o) =>
      (o.awslogs ? create : run)({
        name: o.name,
        Cmd: o.stopTakes !== undefined
          ? ["sh", "-c", "trap '' TERM; trap 'exit 3' USR1; sleep 100000 & wait"]
          : o.behaviour === "crash"
          ? ["sh", "-c", `trap 'exit 143' TERM; sleep ${o.crashAfter ?? 1} & wait; exit 3`]
          : untilStopped,
        ...(o.stopTakes !== undefined ? { StopTimeout: o.stopTakes } : {}),
        Labels: {
          [ECS_LABELS.cluster]: o.cluster ?? "sentry-test",
          [ECS_LABELS.taskArn]: `arn:aws:ecs:eu-test-1:123456789012:task/${o.cluster ?? "sentry-test"}/${o.name}`,
          [ECS_LABELS.family]: o.family,
          [ECS_LABELS.version]: "1",
          [ECS_LABELS.containerName]: o.containerName,
        },
        ...(o.healthCheck ? { Healthcheck: { Test: ["CMD", "true"], Interval: 200_000_000, Retries: 1 } } : {}),
        HostConfig: {
          ...hostConfig(o.restartPolicy),
          ...(o.awslogs
            ? {
              LogConfig: {
                Type: "awslogs",
                Config: {
                  "awslogs-region": "eu-test-1",
                  "awslogs-group": "sentry-test",
                  ...(o.awslogs.mode ? { mode: o.awslogs.mode } : {}),
                },
              },
            }
            : {}),
        },
      }),
    async crash(idOrName) {
      const { Id } = await api.call<{ Id: string }>("POST", `/containers/${idOrName}/exec`, {
        body: { Cmd: ["sh", "-c", "kill -USR1 1; kill 1"] },
      });
      await api.call("POST", `/exec/${Id}/start`, { body: { Detach: true } });
    },
    async pause(idOrName) {
      await api.call("POST", `/containers/${idOrName}/pause`);
    },
    createUnlabelled: (name) => run({ name, Cmd: untilStopped, HostConfig: hostConfig() }),
    state,
    async states() {
      const all = await api.call<Array<{ Id: string }>>("GET", "/containers/json?all=1");
      const found = await Promise.all(all.map((c) => state(c.Id)));
      return new Map(found.filter((s): s is ContainerState => s !== undefined).map((s) => [s.name, s]));
    },
    removeAll,
    async restartDaemon() {
      await stopDaemon();
      await startDaemon();
    },
    stopDaemon,
    startDaemon,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** `docker import` over the API: a root file system of busybox and a few applet links. */
async function importBusybox(dir: string, socketPath: string): Promise<void> {
  const rootfs = join(dir, "rootfs");
  await Deno.mkdir(join(rootfs, "bin"), { recursive: true });
  await Deno.copyFile(BUSYBOX, join(rootfs, "bin", "busybox"));
  await Deno.chmod(join(rootfs, "bin", "busybox"), 0o755);
  for (const applet of APPLETS) await Deno.symlink("busybox", join(rootfs, "bin", applet));
  const tar = await new Deno.Command("tar", { args: ["-C", rootfs, "-c", "."], stdout: "piped" }).output();
  if (!tar.success) throw new Error("tar of the busybox root file system failed");
  const [repo, tag] = IMAGE.split(":");
  using http = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
  const response = await fetch(`http://docker/images/create?fromSrc=-&repo=${repo}&tag=${tag}`, {
    method: "POST",
    body: tar.stdout,
    headers: { "content-type": "application/x-tar" },
    client: http,
  });
  const body = await response.text();
  if (!response.ok || /"error"/.test(body)) throw new Error(`image import failed: HTTP ${response.status} ${body}`);
}

/** containerd and its shims outlive dockerd when killed; only processes naming our folder are ours. */
async function killLeftovers(dir: string): Promise<void> {
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.includes(dir)) {
      try {
        Deno.kill(Number(entry.name), "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
  }
}

async function unmountUnder(dir: string): Promise<void> {
  const mounts = await Deno.readTextFile("/proc/self/mounts");
  const points = mounts.split("\n").map((line) => line.split(" ")[1]).filter((p) => p?.startsWith(dir + "/"));
  for (const point of points.sort((a, b) => b.length - a.length)) {
    await new Deno.Command("umount", { args: ["-l", point], stdout: "null", stderr: "null" }).output();
  }
}

/**
 * The engine for a test file, or `undefined` (with a printed reason) when Docker cannot run here.
 * With `REQUIRE_DOCKER=1` an unavailable engine is an error instead, so CI cannot silently skip.
 */
export async function engineForTests(): Promise<DockerEngine | undefined> {
  const reason = await dockerUnavailableReason();
  if (reason) {
    if (Deno.env.get("REQUIRE_DOCKER") === "1") throw new Error(`REQUIRE_DOCKER=1 but ${reason}`);
    console.warn(`skipping the Docker engine tests: ${reason} (set REQUIRE_DOCKER=1 to make this an error)`);
    return undefined;
  }
  return await startDockerEngine();
}
