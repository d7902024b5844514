/**
 * The three roles, each defined once: binary name, entry, and the exact Deno permissions and V8 flags
 * its compiled binary gets. `deno task <role>`, `deno compile` and the process-level tests all take
 * their flags from here (deno.json's tasks are generated from it by `deno task docs`).
 * @module
 */

export type RoleName = "nlb-sidecar" | "appmesh-helper" | "network-sentry";

export interface RoleInfo {
  readonly name: RoleName;
  readonly binary: string;
  /** Entry module, relative to the project root. */
  readonly entry: string;
  readonly summary: string;
  /** Deno permission flags, as narrow as the role allows. */
  readonly permissions: readonly string[];
  /** V8 flags baked into the binary (heap limits that keep the role inside its memory budget). */
  readonly v8Flags: readonly string[];
}

export const ROLES: readonly RoleInfo[] = [
  {
    name: "nlb-sidecar",
    binary: "ecs-nlb-sidecar",
    entry: "cmd/nlb_sidecar.ts",
    summary:
      "Essential sidecar: exits 0 once its task's NLB/ALB target has drained, so ECS stops the task early and cleanly.",
    // Network: the metadata endpoint, regional or VPC-endpoint AWS APIs (any host, set by AWS_ENDPOINT_URL*).
    // Read: /proc/net for connection counting, /tmp for the status file. Write: /tmp only.
    permissions: ["--allow-env", "--allow-net", "--allow-read=/proc/net,/tmp", "--allow-write=/tmp"],
    v8Flags: [],
  },
  {
    name: "appmesh-helper",
    binary: "ecs-appmesh-helper",
    entry: "cmd/appmesh_helper.ts",
    summary: "Envoy sidecar helper: healthy only once Envoy is live; on SIGTERM fails Envoy's health check and drains.",
    permissions: ["--allow-env", "--allow-net"],
    v8Flags: [],
  },
  {
    name: "network-sentry",
    binary: "ecs-network-sentry",
    entry: "cmd/network_sentry.ts",
    summary: "ECS Anywhere host daemon: keeps ECS containers alive through control-plane outages, hands back cleanly.",
    // Read/write anywhere: the log file, state file, CA file and Docker socket are operator-chosen paths.
    permissions: ["--allow-env", "--allow-net", "--allow-read", "--allow-write"],
    v8Flags: [],
  },
];

export function roleInfo(name: string): RoleInfo | undefined {
  return ROLES.find((role) => role.name === name);
}

/** Permission and V8 flags exactly as `deno compile` bakes them into the role's binary. */
export function runtimeFlags(role: RoleInfo): string[] {
  const flags = ["--no-prompt", ...role.permissions];
  if (role.v8Flags.length > 0) flags.push(`--v8-flags=${role.v8Flags.join(",")}`);
  return flags;
}

/** `deno run ...` arguments that start the role as its binary would run. */
export function denoRunArgs(role: RoleInfo, args: readonly string[] = []): string[] {
  return ["run", ...runtimeFlags(role), role.entry, ...args];
}

/** The `deno task <role>` command line, as written into deno.json. */
export function taskCommand(role: RoleInfo): string {
  return ["deno", ...denoRunArgs(role)].join(" ");
}

export const COMPILE_TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] as const;
export type CompileTarget = typeof COMPILE_TARGETS[number];

/** `deno compile ...` arguments for one role and target. */
export function denoCompileArgs(role: RoleInfo, target: CompileTarget, output: string): string[] {
  return ["compile", ...runtimeFlags(role), "--target", target, "--output", output, role.entry];
}
