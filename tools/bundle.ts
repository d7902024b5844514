/**
 * `deno task bundle`: one tree-shaken, minified bundle per role in dist/bundle/<role>/, the code that
 * `deno compile`, `deno task <role>`, the process tests and the benchmarks all run.
 *
 * Why a bundle: run from source, Deno loads the AWS SDK's CommonJS builds (`dist-cjs`, every command of
 * every client); a bundler takes the ES builds (`dist-es`) and keeps only the commands the role sends, and
 * code splitting keeps each dynamic `import()` a chunk of its own, loaded on first use (the sidecar's EC2
 * client). Why esbuild (npm, pinned in deno.json) rather than `deno bundle`: `deno bundle` resolves some SDK
 * packages (@smithy/core, @aws-sdk/core) to their CommonJS builds. The sidecar's VmHWM, awsvpc mode, its
 * flags, 15 s of polling, median of 3: 70 MiB from source; `deno bundle --code-splitting` 64 MiB, with
 * `--minify` 61 MiB, with `--no-code-cache` too 58.3 MiB; esbuild as below with `--no-code-cache` 54.5 MiB.
 *
 * dist/bundle/inputs.sha256 is a digest of every input (cmd/, lib/, deno.json, deno.lock and this file),
 * written after the last role is bundled. The process harness (sim/role_process.ts) refuses to run a
 * bundle whose digest no longer matches the sources, so a test can never pass against stale code; an
 * up-to-date bundle is not rebuilt, and this tool then prints nothing.
 * @module
 */
import { createHash } from "node:crypto";
import { bundleDir, bundleEntry, ROLES } from "../lib/roles.ts";

const root = new URL("../", import.meta.url).pathname;
const STAMP = "dist/bundle/inputs.sha256";
const INPUT_DIRS = ["cmd", "lib"];
const INPUT_FILES = ["deno.json", "deno.lock", "tools/bundle.ts"];

function inputFiles(): string[] {
  const files = [...INPUT_FILES];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(`${root}${dir}`)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.isFile) files.push(path);
    }
  };
  for (const dir of INPUT_DIRS) walk(dir);
  return files.sort();
}

/** SHA-256 over the path and content of every input, in a fixed order (synchronous: spawnRole is). */
export function inputsDigest(): string {
  const hash = createHash("sha256");
  for (const path of inputFiles()) hash.update(`${path}\0`).update(Deno.readFileSync(`${root}${path}`)).update("\0");
  return hash.digest("hex");
}

/** Why the bundles in dist/bundle/ cannot be trusted, or `undefined` when they match the sources. */
export function bundlesStale(): string | undefined {
  let built: string;
  try {
    built = Deno.readTextFileSync(`${root}${STAMP}`).trim();
  } catch {
    return "dist/bundle/ has not been built";
  }
  return built === inputsDigest() ? undefined : "the sources changed since dist/bundle/ was built";
}

/**
 * The project's npm packages, at the versions of deno.json and deno.lock, laid out as a node_modules tree
 * where esbuild can resolve them (Deno's own cache is not one): `deno install` in a folder of its own under
 * dist/, so the project itself keeps resolving npm packages from Deno's cache.
 */
async function installNodeModules(): Promise<string> {
  const dir = `${root}dist/npm`;
  await Deno.mkdir(dir, { recursive: true });
  for (const file of ["deno.json", "deno.lock"]) await Deno.copyFile(`${root}${file}`, `${dir}/${file}`);
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["install", "--quiet", "--frozen", "--node-modules-dir=auto"],
    cwd: dir,
    stdout: "inherit",
  }).output();
  if (!result.success) throw new Error("deno install of the npm packages for the bundles failed");
  return `${dir}/node_modules`;
}

/** Bundles every role unless the stamp says the bundles are current. */
export async function ensureBundles(): Promise<void> {
  if (bundlesStale() === undefined) return;
  const digest = inputsDigest();
  await Deno.remove(`${root}dist/bundle`, { recursive: true }).catch(() => {});
  const nodeModules = await installNodeModules();
  // Loaded only to build: the harness imports this module for the stamp check alone.
  const esbuild = await import("esbuild");
  try {
    for (const role of ROLES) {
      console.error(`bundle: ${role.entry} -> ${bundleEntry(role)}`);
      await esbuild.build({
        entryPoints: [`${root}${role.entry}`],
        outdir: `${root}${bundleDir(role)}`,
        bundle: true,
        // Each dynamic import() a chunk of its own, loaded on first use.
        splitting: true,
        format: "esm",
        // Node built-ins stay imports (`node:fs`), which Deno provides.
        platform: "node",
        // The SDK's ES builds (dist-es), whose unused commands can be dropped, not its CommonJS builds.
        mainFields: ["module", "main"],
        conditions: ["module", "import"],
        nodePaths: [nodeModules],
        minify: true,
        logLevel: "warning",
      });
    }
  } finally {
    await esbuild.stop();
  }
  // Deno analyses a module graph, every chunk (lazy ones too), on a file's first run and caches that in
  // DENO_DIR; done here, so no run pays for it (about 25 MiB more VmHWM for the sidecar's first run).
  for (const role of ROLES) {
    const cached = await new Deno.Command(Deno.execPath(), {
      args: ["cache", "--quiet", "--no-config", bundleEntry(role)],
      cwd: root,
    }).output();
    if (!cached.success) throw new Error(`deno cache ${bundleEntry(role)} failed`);
  }
  await Deno.writeTextFile(`${root}${STAMP}`, `${digest}\n`);
}

if (import.meta.main) await ensureBundles();
