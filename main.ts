/**
 * `main.ts <role> [flags]`: runs one role, as its binary would. `main.ts --help` lists the roles.
 * @module
 */
import type { LoggingSettings, RoleProgram } from "./lib/lifecycle.ts";
import { roleInfo, type RoleName, ROLES } from "./lib/roles.ts";
import { VERSION } from "./lib/version.ts";

/** Each role's program, loaded only when that role runs; typed as one kind so any of them can be run. */
const programs: Readonly<Record<RoleName, () => Promise<RoleProgram<LoggingSettings>>>> = {
  "nlb-sidecar": () => import("./lib/nlb_sidecar/program.ts").then((m) => m.nlbSidecarProgram),
  "appmesh-helper": () => import("./lib/appmesh_helper/program.ts").then((m) => m.appmeshHelperProgram),
  "network-sentry": () => import("./lib/network_sentry/program.ts").then((m) => m.networkSentryProgram),
};

function usage(): string {
  const width = Math.max(...ROLES.map((r) => r.name.length));
  return [
    "usage: main.ts <role> [flags]     (each role also ships as its own binary)",
    "",
    "roles:",
    ...ROLES.map((r) => `  ${r.name.padEnd(width)}  ${r.summary}`),
    "",
    "main.ts <role> --help lists a role's settings. main.ts --version prints the version.",
    "",
  ].join("\n");
}

if (import.meta.main) {
  const [first, ...rest] = Deno.args;
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    console.log(usage());
    Deno.exit(first === undefined ? 2 : 0);
  }
  if (first === "--version") {
    console.log(`ecs-lifecycle ${VERSION}`);
    Deno.exit(0);
  }
  const info = roleInfo(first);
  if (!info) {
    console.error(`main.ts: unknown role ${JSON.stringify(first)}; one of: ${ROLES.map((r) => r.name).join(", ")}`);
    Deno.exit(2);
  }
  const { runRole } = await import("./lib/lifecycle.ts");
  const program = await programs[info.name]();
  Deno.exit(await runRole(program, { args: rest }));
}
