/**
 * The three roles, each defined once: binary name, entry, and the exact Deno permissions and V8 flags
 * its compiled binary gets. `deno task <role>`, `deno compile`, the process-level tests and the benchmarks
 * all take their flags from here (deno.json's tasks are generated from it by `deno task docs`), and all
 * run the role's bundle (tools/bundle.ts), never its sources: what is tested is what ships.
 * @module
 */

/**
 * The three roles, by the name `main.ts` and `deno task` know them by.
 *
 * @example
 * ```ts
 * const role: RoleName = "network-sentry";
 * ```
 */
export type RoleName = "nlb-sidecar" | "appmesh-helper" | "network-sentry";

/**
 * One role, defined once: its binary and how that binary is run.
 *
 * @example The command line a role's binary is equivalent to
 * ```ts
 * const sentry: RoleInfo = ROLES.find((role) => role.name === "network-sentry")!;
 * console.log(["deno", "run", ...sentry.permissions, sentry.entry].join(" "));
 * ```
 */
export interface RoleInfo {
  /** The role's name. */
  readonly name: RoleName;
  /** The compiled binary's file name (`ecs-nlb-sidecar`, ...). */
  readonly binary: string;
  /** Entry module, relative to the project root. */
  readonly entry: string;
  /** One sentence for `--help`. */
  readonly summary: string;
  /** Deno permission flags, as narrow as the role allows. */
  readonly permissions: readonly string[];
  /** V8 flags baked into the binary (heap limits that keep the role inside its memory budget). */
  readonly v8Flags: readonly string[];
}

/**
 * Every role, in the README's order.
 *
 * @example
 * ```ts
 * for (const role of ROLES) console.log(role.binary, role.summary);
 * ```
 */
export const ROLES: readonly RoleInfo[] = [
  {
    name: "nlb-sidecar",
    binary: "ecs-nlb-sidecar",
    entry: "cmd/nlb_sidecar.ts",
    summary:
      "Essential sidecar: exits 0 once its task's NLB/ALB target has drained, so ECS stops the task early and cleanly.",
    // Deno opens /proc/net/tcp (DRAIN_MODE=connections) only for a process holding every permission, so
    // the binary gets them all; at start the daemon opens the socket tables and then revokes run and ffi
    // (lib/nlb_sidecar/program.ts). Without connections mode the AWS SDK alone would need
    // --allow-env --allow-net --allow-sys=osRelease and read/write on the status file.
    permissions: ["--allow-all"],
    // A 1 MiB young generation, and lite mode (no optimizing JIT; the sidecar mostly sleeps), which lowered the
    // peak RSS measured as in bench/nlb_sidecar.ts from 71 to 68 MiB. No old-space cap: it measured no lower and
    // would turn a large /proc/net/tcp or a slow leak into a crash of an essential container.
    v8Flags: ["--max-semi-space-size=1", "--lite-mode"],
  },
  {
    name: "appmesh-helper",
    binary: "ecs-appmesh-helper",
    entry: "cmd/appmesh_helper.ts",
    summary: "Envoy sidecar helper: healthy only once Envoy is live; on SIGTERM fails Envoy's health check and drains.",
    // Env: whole (runRole reads it with Deno.env.toObject, which a name list does not allow). Network: Envoy's
    // admin API and the app's health check, at operator-chosen hosts (in bridge mode APP_HEALTHCHECK_URL names
    // another container). Read/write: Deno asks both to connect to a unix socket, and Envoy's admin socket
    // (ENVOY_ADMIN_URL=unix:///path, App Mesh's ENVOY_ADMIN_MODE=uds) is an operator-chosen path; the helper
    // opens no file. No subprocesses.
    permissions: ["--allow-env", "--allow-net", "--allow-read", "--allow-write"],
    // None: heap limits (semi-space 1 MiB, old space 32 MiB, jitless) were measured and did not lower the peak,
    // which is the runtime's own native and file-backed memory, not the JavaScript heap.
    v8Flags: [],
  },
  {
    name: "network-sentry",
    binary: "ecs-network-sentry",
    entry: "cmd/network_sentry.ts",
    summary: "ECS Anywhere host daemon: keeps ECS containers alive through control-plane outages, hands back cleanly.",
    // Every permission: the journal and status file keep the boot clock with the boot's id, and Deno reads
    // /proc/uptime and /proc/sys/kernel/random/boot_id only for a process holding all. At start the sentry reads
    // both and revokes run and ffi (lib/network_sentry/program.ts): the Docker API is spoken over the socket
    // directly. What it uses besides: the whole env (runRole reads Deno.env.toObject), the network (the probe, any
    // endpoint or proxy, tcp:// Docker hosts), read/write anywhere (log, state, CA file, Docker socket: operator-chosen).
    permissions: ["--allow-all"],
    // Young generation 1 MiB, old space 32 MiB, lite mode (no optimizing JIT; the sentry mostly sleeps). Peak RSS in
    // bench/network_sentry.ts (50 containers through both transitions), median of 5: 75.4 MiB without these flags,
    // 62.6 MiB with them.
    v8Flags: ["--max-semi-space-size=1", "--max-old-space-size=32", "--lite-mode"],
  },
];

export function roleInfo(name: string): RoleInfo | undefined {
  return ROLES.find((role) => role.name === name);
}

/** Where tools/bundle.ts writes the role's bundle (an entry and its chunks), relative to the project root. */
export function bundleDir(role: RoleInfo): string {
  return `dist/bundle/${role.name}`;
}

/** The bundle's entry module, relative to the project root. */
export function bundleEntry(role: RoleInfo): string {
  return `${bundleDir(role)}/${role.entry.slice(role.entry.lastIndexOf("/") + 1).replace(/\.ts$/, ".js")}`;
}

/**
 * Permission and V8 flags exactly as `deno compile` bakes them into the role's binary. The bundle needs
 * neither deno.json nor deno.lock (its npm code and JSON are inlined): `--no-config` spares deno reading
 * them and setting up npm resolution. `--no-code-cache`: deno neither maps nor writes its V8 code-cache
 * database. The sidecar's VmHWM (awsvpc, median of 3, tools/bundle.ts): 58 MiB bundled, 56 with
 * `--no-code-cache`, 54.5 with both.
 */
export function runtimeFlags(role: RoleInfo): string[] {
  const flags = ["--no-prompt", "--no-config", "--no-code-cache", ...role.permissions];
  if (role.v8Flags.length > 0) flags.push(`--v8-flags=${role.v8Flags.join(",")}`);
  return flags;
}

/** `deno run ...` arguments that start the role's bundle as its binary would run. */
export function denoRunArgs(role: RoleInfo, args: readonly string[] = []): string[] {
  return ["run", ...runtimeFlags(role), bundleEntry(role), ...args];
}

/** The `deno task <role>` command line, as written into deno.json. */
export function taskCommand(role: RoleInfo): string {
  return ["deno", ...denoRunArgs(role)].join(" ");
}

export const COMPILE_TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] as const;
export type CompileTarget = typeof COMPILE_TARGETS[number];

/** `deno compile ...` arguments for one role and target. */
export function denoCompileArgs(role: RoleInfo, target: CompileTarget, output: string): string[] {
  return ["compile", ...runtimeFlags(role), "--target", target, "--output", output, bundleEntry(role)];
}
