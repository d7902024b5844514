/**
 * A hard memory limit for a role as an operator sets one: the role in a real container, `docker run
 * --memory M --memory-swap M` (what ECS does for a container's `memory`), on a private Docker engine.
 *
 * The image is imported from a root file system assembled here: the `deno` executable, its shared
 * libraries and the role's bundle (dist/bundle/), nothing else. Under a hard limit the kernel reclaims the
 * executable's clean file-backed pages before it kills, and faults them back in from disk: how many bytes
 * each fault reads is the disk's read-ahead. The engine's data root is therefore an ext4 file system on a
 * loop device whose `queue/read_ahead_kb` is 128 (the usual figure of EBS and NVMe volumes), not the build
 * machine's own disk (this one reads ahead 8 MiB, so each fault pulled 8 MiB into the cage and a 64 MiB
 * sidecar thrashed). The loop device does direct I/O, so its backing file is not cached twice.
 *
 * Each image slot carries a file of its own, so slots are separate layers with separate copies of `deno`:
 * containers side by side do not share page cache (the first toucher of a shared page is charged for it),
 * and a slot's layer is dropped from the page cache before each run, so every run starts cold.
 * @module
 */
import { join } from "node:path";
import { type DockerEngine, startDockerEngine } from "../sim/docker_engine.ts";
import { bundleEntry, roleInfo, type RoleName, ROLES, runtimeFlags } from "../lib/roles.ts";
import { type RoleProcess, type SpawnOptions, spawnRole } from "../sim/role_process.ts";

const READ_AHEAD_KIB = 128;
const DISK_SIZE = "6G";
const HEALTH_EVERY_MS = 5_000;
const IMAGE = "ecs-lifecycle-bench";
/** Inside the image: the bundles sit where the harness's relative bundle paths point. */
const WORKDIR = "/app";
const MiB = 1024 * 1024;
const CONTAINER_DENO_DIR = "/var/cache/deno";

export interface CageUsage {
  /** Most memory the kernel charged to the container at once (anonymous and page cache), MiB. */
  readonly peakMiB: number;
  /** Peak resident set of the role process (VmHWM), MiB. */
  readonly vmHwmMiB: number;
  /** OOM kills in the container: the role or a health check. */
  readonly oomKills: number;
  /** Major page faults of the role process: pages it had to read back from the disk. */
  readonly majorFaults: number;
}

export interface HealthChecks {
  readonly runs: number;
  /** Exits other than 0, OOM-killed ones (137) included. */
  readonly failures: number;
  readonly oomKilled: number;
}

export interface RoleContainer extends AsyncDisposable {
  readonly process: RoleProcess;
  readonly limitMiB: number;
  /** Latest figures, sampled every second while the container runs (its cgroup goes with it). */
  usage(): CageUsage;
  /** The role's check (`health`), run every 5 s in the container since it started. */
  health(): HealthChecks;
}

export interface ContainerRun {
  readonly limitMiB: number;
  readonly env: Readonly<Record<string, string>>;
  readonly args?: readonly string[];
  /** `host:container` bind mounts (the sentry's Docker socket). */
  readonly mounts?: readonly string[];
  /**
   * The check run every 5 s in the container, as ECS runs a `healthCheck`: by default the role's `health`
   * subcommand (the sentry, a host daemon, has `status` instead).
   */
  readonly check?: readonly string[];
}

export interface ContainerHost extends AsyncDisposable {
  readonly engine: DockerEngine;
  readonly readAheadKiB: number;
  /** Starts the role in a container of its own, on a free image slot (waits for one). */
  run(role: RoleName, options: ContainerRun): Promise<RoleContainer>;
}

async function sh(
  command: string,
  args: string[],
  input?: Uint8Array | Record<string, string>,
): Promise<string> {
  const env = input instanceof Uint8Array ? undefined : input;
  if (env) input = undefined;
  const child = new Deno.Command(command, {
    args,
    env,
    stdin: input instanceof Uint8Array ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (input instanceof Uint8Array) {
    const writer = child.stdin.getWriter();
    await writer.write(input);
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  if (!out.success) throw new Error(`${command} ${args.join(" ")}: ${decoder.decode(out.stderr).trim()}`);
  return decoder.decode(out.stdout).trim();
}

/** Why this machine cannot run the container benchmarks, or `undefined`. */
async function unavailableReason(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "needs root (loop device, mount, dockerd)";
  for (const tool of ["dockerd", "docker", "losetup", "mkfs.ext4", "python3", "ldd"]) {
    const found = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null", stderr: "null" })
      .output().then((o) => o.success, () => false);
    if (!found) return `${tool} is not installed`;
  }
  return undefined;
}

/** Drops the files' pages from the page cache (fsync first: dirty pages cannot be dropped). */
async function evictFromPageCache(root: string): Promise<void> {
  const script = [
    "import os, sys",
    "for d, _, fs in os.walk(sys.argv[1]):",
    "    for f in fs:",
    "        path = os.path.join(d, f)",
    "        if os.path.islink(path) or not os.path.isfile(path): continue",
    "        fd = os.open(path, os.O_RDONLY)",
    "        os.fsync(fd)",
    "        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)",
    "        os.close(fd)",
  ].join("\n");
  await sh("python3", ["-c", script, root]);
}

/** ext4 on a loop device reading ahead 128 KiB, mounted at `mountPoint`; returns the device. */
async function readAheadDisk(dir: string, mountPoint: string): Promise<string> {
  const file = join(dir, "disk.img");
  await sh("truncate", ["-s", DISK_SIZE, file]);
  await sh("mkfs.ext4", ["-q", "-F", file]);
  const device = await sh("losetup", ["--find", "--show", "--direct-io=on", file]);
  await Deno.mkdir(mountPoint);
  await sh("mount", [device, mountPoint]);
  await Deno.writeTextFile(`/sys/block/${device.replace("/dev/", "")}/queue/read_ahead_kb`, String(READ_AHEAD_KIB));
  return device;
}

/** A root file system of the deno executable, the shared libraries it links and the bundles, as a tar. */
async function rootFileSystem(dir: string, slot: number): Promise<Uint8Array> {
  const rootfs = join(dir, `rootfs-${slot}`);
  const deno = Deno.execPath();
  const libraries = (await sh("ldd", [deno])).split("\n")
    .map((line) => line.match(/(\/\S+) \(0x/)?.[1])
    .filter((path): path is string => path !== undefined);
  for (const path of [...libraries, deno]) {
    const target = join(rootfs, path === deno ? "/deno" : path);
    await Deno.mkdir(join(target, ".."), { recursive: true });
    await Deno.copyFile(path, target);
    await Deno.chmod(target, 0o755);
  }
  const project = new URL("../", import.meta.url).pathname;
  await Deno.mkdir(join(rootfs, WORKDIR, "dist"), { recursive: true });
  await sh("cp", ["-r", join(project, "dist/bundle"), join(rootfs, WORKDIR, "dist/")]);
  await Deno.mkdir(join(rootfs, "tmp"), { mode: 0o1777 });
  await Deno.chmod(join(rootfs, "tmp"), 0o1777);
  await Deno.writeTextFile(join(rootfs, "slot"), String(slot));
  // Deno analyses a module graph (every chunk, lazy ones too) on its first run and caches the result in
  // DENO_DIR; a compiled binary carries that analysis. Done here, in the image's own paths, as a binary
  // would have it, so that no run pays the first-run analysis (about 25 MiB more VmHWM for the sidecar).
  for (const role of ROLES) {
    await sh("chroot", [rootfs, "/deno", "cache", "--quiet", "--no-config", join(WORKDIR, bundleEntry(role))], {
      DENO_DIR: CONTAINER_DENO_DIR,
    });
  }
  const tar = await new Deno.Command("tar", { args: ["-C", rootfs, "-c", "."], stdout: "piped" }).output();
  if (!tar.success) throw new Error("tar of the role root file system failed");
  await Deno.remove(rootfs, { recursive: true });
  return tar.stdout;
}

/** The memory cgroup files of a container's process (v1 or v2), read while it runs. */
async function cgroupUsage(pid: number): Promise<Omit<CageUsage, "vmHwmMiB" | "majorFaults">> {
  const membership = await Deno.readTextFile(`/proc/${pid}/cgroup`);
  const v1 = membership.match(/^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/m)?.[1];
  // An exited process reports the root cgroup: not the container's.
  if (v1 === "/" || !membership.includes("docker")) throw new Error(`process ${pid} is not in a container`);
  const keyed = async (path: string, key: string) =>
    Number((await Deno.readTextFile(path)).match(new RegExp(`^${key} (\\d+)$`, "m"))?.[1] ?? 0);
  if (v1 !== undefined) {
    const dir = `/sys/fs/cgroup/memory${v1}`;
    return {
      peakMiB: Number(await Deno.readTextFile(`${dir}/memory.max_usage_in_bytes`)) / MiB,
      oomKills: await keyed(`${dir}/memory.oom_control`, "oom_kill"),
    };
  }
  const mount = (await Deno.readTextFile("/proc/mounts")).match(/^\S+ (\S+) cgroup2 /m)?.[1];
  const dir = `${mount}${membership.match(/^0::(.*)$/m)?.[1]}`;
  return {
    peakMiB: Number(await Deno.readTextFile(`${dir}/memory.peak`)) / MiB,
    oomKills: await keyed(`${dir}/memory.events`, "oom_kill"),
  };
}

async function processFigures(pid: number): Promise<{ vmHwmMiB: number; majorFaults: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Field 12 (majflt); the command name in field 2 may hold spaces, so count from its closing parenthesis.
  return {
    vmHwmMiB: Number(status.match(/VmHWM:\s+(\d+) kB/)?.[1] ?? 0) / 1024,
    majorFaults: Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[9]),
  };
}

/**
 * A private engine whose data root is on a 128 KiB read-ahead disk, with `slots` role images; or the
 * reason this machine cannot have one (not root, no dockerd, no loop devices).
 */
export async function containerHost(slots: number): Promise<ContainerHost | string> {
  const reason = await unavailableReason();
  if (reason) return reason;
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "ra" });
  const mountPoint = join(dir, "disk");
  let device: string | undefined;
  let engine: DockerEngine | undefined;
  const cleanUp = async () => {
    await engine?.close();
    if (device) {
      await sh("umount", ["-l", mountPoint]).catch(() => {});
      await sh("losetup", ["-d", device]).catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const layers: string[] = [];
  try {
    device = await readAheadDisk(dir, mountPoint);
    engine = await startDockerEngine({ dataRoot: join(mountPoint, "docker") });
    for (let slot = 0; slot < slots; slot++) {
      await sh("docker", ["-H", engine.host, "import", "-", `${IMAGE}:${slot}`], await rootFileSystem(dir, slot));
      layers.push(
        await sh("docker", [
          "-H",
          engine.host,
          "image",
          "inspect",
          "-f",
          "{{.GraphDriver.Data.UpperDir}}",
          `${IMAGE}:${slot}`,
        ]),
      );
    }
  } catch (error) {
    await cleanUp();
    return `container host failed: ${(error as Error).message}`;
  }
  const host = engine.host;
  const free = Array.from({ length: slots }, (_, slot) => slot);
  const waiting: Array<(slot: number) => void> = [];
  const acquire = () => free.length ? Promise.resolve(free.shift()!) : new Promise<number>((r) => waiting.push(r));
  const release = (slot: number) => waiting.length ? waiting.shift()!(slot) : free.push(slot);
  let counter = 0;

  async function run(name: RoleName, options: ContainerRun): Promise<RoleContainer> {
    const role = roleInfo(name)!;
    const slot = await acquire();
    await evictFromPageCache(layers[slot]);
    const container = `bench-${name}-${options.limitMiB}-${counter++}`;
    const wrapper = [
      "docker",
      "-H",
      host,
      "run",
      `--name=${container}`,
      "--network=host",
      `--memory=${options.limitMiB}m`,
      `--memory-swap=${options.limitMiB}m`,
      `--workdir=${WORKDIR}`,
      `--env=DENO_DIR=${CONTAINER_DENO_DIR}`,
      // `--env NAME` copies the value from the docker client's environment, which spawnRole sets.
      ...Object.keys(options.env).map((key) => `--env=${key}`),
      ...(options.mounts ?? []).map((mount) => `--volume=${mount}`),
      `${IMAGE}:${slot}`,
    ];
    const process = spawnRole(
      name,
      {
        wrapper,
        denoPath: "/deno",
        env: options.env,
        args: options.args,
      } satisfies SpawnOptions,
    );
    let usage: CageUsage = { peakMiB: 0, vmHwmMiB: 0, oomKills: 0, majorFaults: 0 };
    const checks = { runs: 0, failures: 0, oomKilled: 0 };
    let running = true;
    const exited = process.exited.finally(() => running = false);
    const pidOf = async () =>
      Number(await sh("docker", ["-H", host, "inspect", "-f", "{{.State.Pid}}", container]).catch(() => "0"));
    const sampler = (async () => {
      while (running) {
        const pid = await pidOf();
        if (pid > 0) {
          try {
            usage = { ...await cgroupUsage(pid), ...await processFigures(pid) };
          } catch {
            // the container exited between the look-up and the read
          }
        }
        await Promise.race([exited, new Promise((r) => setTimeout(r, 1_000))]);
      }
      // The cgroup went with the container: an OOM kill of the role itself is only in the engine's record.
      const killed = await sh("docker", ["-H", host, "inspect", "-f", "{{.State.OOMKilled}}", container]).catch(() =>
        ""
      );
      if (killed === "true") usage = { ...usage, oomKills: Math.max(usage.oomKills, 1) };
    })();
    const healthCommand = [
      "-H",
      host,
      "exec",
      container,
      "/deno",
      "run",
      ...runtimeFlags(role),
      bundleEntry(role),
      ...options.check ?? ["health"],
    ];
    const healthLoop = (async () => {
      while (running) {
        await Promise.race([exited, new Promise((r) => setTimeout(r, HEALTH_EVERY_MS))]);
        if (!running || await pidOf() === 0) continue;
        const out = await new Deno.Command("docker", { args: healthCommand, stdout: "null", stderr: "null" }).output();
        if (!running) break;
        checks.runs++;
        if (out.code !== 0) checks.failures++;
        if (out.code === 137) checks.oomKilled++;
      }
    })();
    return {
      process,
      limitMiB: options.limitMiB,
      usage: () => usage,
      health: () => ({ ...checks }),
      async [Symbol.asyncDispose]() {
        await sh("docker", ["-H", host, "rm", "-f", container]).catch(() => {});
        await process[Symbol.asyncDispose]();
        await Promise.all([sampler, healthLoop]);
        release(slot);
      },
    };
  }

  return { engine, readAheadKiB: READ_AHEAD_KIB, run, [Symbol.asyncDispose]: cleanUp };
}

/**
 * The smallest of `candidates` (ascending limits, MiB) whose probe passes, assuming a role that works under a
 * limit works under every larger one; probes `parallel` candidates at a time, spread over what is left.
 */
export async function smallestWorkingLimit<T extends { readonly ok: boolean }>(
  candidates: readonly number[],
  parallel: number,
  probe: (limitMiB: number) => Promise<T>,
): Promise<{ limitMiB: number; result: T } | undefined> {
  let low = 0;
  let high = candidates.length;
  let best: { limitMiB: number; result: T } | undefined;
  while (low < high) {
    const span = high - low;
    const count = Math.min(parallel, span);
    const picks = [
      ...new Set(Array.from({ length: count }, (_, k) => low + Math.floor(((k + 1) * span) / (count + 1)))),
    ];
    const results = await Promise.all(picks.map((i) => probe(candidates[i])));
    const passed = picks.findIndex((_, k) => results[k].ok);
    if (passed >= 0) {
      high = picks[passed];
      best = { limitMiB: candidates[high], result: results[passed] };
      low = passed > 0 ? picks[passed - 1] + 1 : low;
    } else {
      low = picks.at(-1)! + 1;
    }
  }
  return best;
}

const tenths = (value: number) => Math.round(value * 10) / 10;

/** The figures of caged runs for a benchmark's method column; `check` names the check run every 5 s. */
export function describeCagedRuns(
  runs: ReadonlyArray<{ readonly usage: CageUsage; readonly health: HealthChecks }>,
  check: string,
): string {
  return `OOM kills ${runs.map((r) => r.usage.oomKills).join(", ")}; major page faults ${
    runs.map((r) => r.usage.majorFaults).join(", ")
  }; ${check}: ${
    runs.map((r) => `${r.health.failures}/${r.health.runs} failed (${r.health.oomKilled} OOM-killed)`).join(", ")
  }; VmHWM ${runs.map((r) => tenths(r.usage.vmHwmMiB)).join(", ")} MiB; cgroup peak ${
    runs.map((r) => tenths(r.usage.peakMiB)).join(", ")
  } MiB`;
}
