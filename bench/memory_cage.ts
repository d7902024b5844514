/**
 * A hard memory limit for one role process, as ECS sets one for a container (`memory` in the task
 * definition): a memory cgroup of its own (v1 `memory.limit_in_bytes`, or v2 `memory.max`), swap off.
 *
 * VmHWM counts every resident page, the clean file-backed pages of the executable included; under a
 * hard limit the kernel reclaims those instead of killing the process, so only running the role in such
 * a cage shows whether it fits its task definition's limit. For the executable's pages to be charged to
 * the cage as they would be in a container, the role runs from a private copy of the deno executable
 * (the harness's own mapping would otherwise hold the shared pages), and the page cache of both the copy
 * and DENO_DIR is emptied first. DENO_DIR itself is not copied: its caches are keyed by path, and a copy
 * would make the role re-analyse every npm module, work a compiled binary never does.
 * @module
 */

export interface CageUsage {
  /** Most memory the kernel charged to the cage at once (anonymous and page cache), MiB. */
  readonly peakMiB: number;
  readonly oomKills: number;
}

export interface MemoryCage extends AsyncDisposable {
  readonly limitMiB: number;
  /** Command prefix: it moves itself into the cage, then execs the command appended to it. */
  readonly wrapper: readonly string[];
  /** The private, uncached deno executable to run. */
  readonly denoPath: string;
  usage(): Promise<CageUsage>;
}

interface CgroupLayout {
  readonly dir: string;
  readonly limits: ReadonlyArray<readonly [file: string, value: string]>;
  usage(dir: string): Promise<CageUsage>;
}

const MiB = 1024 * 1024;

async function readNumber(path: string): Promise<number> {
  return Number((await Deno.readTextFile(path)).trim());
}

async function keyedValue(path: string, key: string): Promise<number> {
  const match = (await Deno.readTextFile(path)).match(new RegExp(`^${key} (\\d+)$`, "m"));
  return Number(match?.[1] ?? 0);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Where a child memory cgroup of this process's own can go, or why there is none. */
async function cgroupLayout(name: string, limitBytes: number): Promise<CgroupLayout | string> {
  const membership = await Deno.readTextFile("/proc/self/cgroup");
  const v1 = membership.match(/^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/m)?.[1];
  if (v1 !== undefined) {
    const parent = `/sys/fs/cgroup/memory${v1}`;
    if (!await exists(`${parent}/memory.limit_in_bytes`)) return `no cgroup v1 memory controller at ${parent}`;
    const limits: Array<[string, string]> = [["memory.limit_in_bytes", String(limitBytes)]];
    // memsw must be set after the plain limit, and only exists where swap accounting is on.
    if (await exists(`${parent}/memory.memsw.limit_in_bytes`)) {
      limits.push(["memory.memsw.limit_in_bytes", String(limitBytes)]);
    }
    return {
      dir: `${parent}/${name}`,
      limits,
      usage: async (dir) => ({
        peakMiB: await readNumber(`${dir}/memory.max_usage_in_bytes`) / MiB,
        oomKills: await keyedValue(`${dir}/memory.oom_control`, "oom_kill"),
      }),
    };
  }
  const v2 = membership.match(/^0::(.*)$/m)?.[1];
  const mount = (await Deno.readTextFile("/proc/mounts")).match(/^\S+ (\S+) cgroup2 /m)?.[1];
  if (v2 === undefined || mount === undefined) return "no memory cgroup (neither v1 nor v2) for this process";
  const parent = `${mount}${v2 === "/" ? "" : v2}`;
  const controllers = await Deno.readTextFile(`${parent}/cgroup.subtree_control`).catch(() => "");
  if (!controllers.split(/\s+/).includes("memory")) return `the memory controller is not enabled below ${parent}`;
  return {
    dir: `${parent}/${name}`,
    limits: [["memory.max", String(limitBytes)], ["memory.swap.max", "0"]],
    usage: async (dir) => ({
      peakMiB: await readNumber(`${dir}/memory.peak`) / MiB,
      oomKills: await keyedValue(`${dir}/memory.events`, "oom_kill"),
    }),
  };
}

/** Drops the files' pages from the page cache (fsync first: dirty pages cannot be dropped). */
async function evictFromPageCache(paths: readonly string[]): Promise<void> {
  const script = [
    "import os, sys",
    "for root in sys.argv[1:]:",
    "    files = [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]",
    "    for path in files:",
    "        if os.path.islink(path): continue",
    "        fd = os.open(path, os.O_RDONLY)",
    "        os.fsync(fd)",
    "        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)",
    "        os.close(fd)",
  ].join("\n");
  const result = await new Deno.Command("python3", { args: ["-c", script, ...paths], stderr: "piped" }).output();
  if (!result.success) throw new Error(`page cache eviction failed: ${new TextDecoder().decode(result.stderr)}`);
}

/** A cage of `limitMiB`, or the reason this machine cannot make one (not root, no memory cgroup, no python3). */
export async function memoryCage(limitMiB: number): Promise<MemoryCage | string> {
  if (Deno.uid() !== 0) return "needs root to create a memory cgroup";
  const layout = await cgroupLayout(`ecs-lifecycle-bench-${crypto.randomUUID().slice(0, 8)}`, limitMiB * MiB);
  if (typeof layout === "string") return layout;
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`;
  const scratch = await Deno.makeTempDir({ prefix: "memory-cage-" });
  const denoPath = `${scratch}/deno`;
  try {
    await Deno.copyFile(Deno.execPath(), denoPath);
    await Deno.chmod(denoPath, 0o755);
    await evictFromPageCache([denoPath, denoDir]);
    await Deno.mkdir(layout.dir);
    for (const [file, value] of layout.limits) await Deno.writeTextFile(`${layout.dir}/${file}`, value);
  } catch (error) {
    await Deno.remove(scratch, { recursive: true });
    await Deno.remove(layout.dir).catch(() => {});
    return (error as Error).message;
  }
  return {
    limitMiB,
    wrapper: ["/bin/sh", "-c", `echo $$ > '${layout.dir}/cgroup.procs' && exec "$@"`, "memory-cage"],
    denoPath,
    usage: () => layout.usage(layout.dir),
    async [Symbol.asyncDispose]() {
      await Deno.remove(layout.dir).catch(() => {});
      await Deno.remove(scratch, { recursive: true });
    },
  };
}

/** Major page faults so far: pages the process had to read back from disk (thrashing under a tight limit). */
export async function majorFaults(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Field 12 (majflt); the command name in field 2 may hold spaces, so count from its closing parenthesis.
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[9]);
}
