/**
 * `deno task compile [--role R] [--target T|host] [--out DIR]`: one standalone binary per role and
 * target in dist/<target>/, compiled from the role's bundle (built first when stale, tools/bundle.ts)
 * with exactly the permissions and V8 flags defined in lib/roles.ts.
 *
 * `deno compile` embeds Deno's `denort` runtime, which it downloads for each target unless
 * `DENORT_BIN` names a local copy (then only the target that copy was built for can be produced).
 * @module
 */
import { parseArgs } from "node:util";
import { COMPILE_TARGETS, type CompileTarget, denoCompileArgs, ROLES } from "../lib/roles.ts";
import { ensureBundles } from "./bundle.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { role: { type: "string" }, target: { type: "string" }, out: { type: "string", default: "dist" } },
});

const hostTarget = `${Deno.build.arch}-unknown-linux-gnu` as CompileTarget;
const targets: CompileTarget[] = values.target === undefined
  ? (Deno.env.get("DENORT_BIN") ? [hostTarget] : [...COMPILE_TARGETS])
  : [values.target === "host" ? hostTarget : values.target as CompileTarget];
for (const target of targets) {
  if (!COMPILE_TARGETS.includes(target)) {
    console.error(`compile: unknown target ${target}; one of ${COMPILE_TARGETS.join(", ")} or host`);
    Deno.exit(2);
  }
}
const roles = values.role === undefined ? ROLES : ROLES.filter((r) => r.name === values.role);
if (roles.length === 0) {
  console.error(`compile: unknown role ${values.role}; one of ${ROLES.map((r) => r.name).join(", ")}`);
  Deno.exit(2);
}
const denort = Deno.env.get("DENORT_BIN");
if (denort !== undefined) {
  try {
    Deno.statSync(denort);
  } catch {
    console.error(`compile: DENORT_BIN=${denort} does not exist`);
    Deno.exit(2);
  }
}

await ensureBundles();
for (const target of targets) {
  for (const role of roles) {
    const output = `${values.out}/${target}/${role.binary}`;
    const args = denoCompileArgs(role, target, output);
    console.log(`deno ${args.join(" ")}`);
    const result = await new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "piped" }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    Deno.stderr.writeSync(result.stderr);
    if (!result.success) {
      if (denort === undefined && /denort|dl\.deno\.land|download/i.test(stderr)) {
        console.error(
          [
            "",
            `compile: deno could not download its denort runtime for ${target}.`,
            "  deno compile embeds a prebuilt runtime fetched from Deno's download host, which this machine cannot reach.",
            `  Fix: run on a machine that can reach it, or set DENORT_BIN to a denort ${Deno.version.deno} for ${target}`,
            "  (unzip denort-<target>.zip from the Deno release) and pass --target host or that target.",
          ].join("\n"),
        );
      }
      Deno.exit(1);
    }
  }
}
