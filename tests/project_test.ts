/**
 * Project-level promises: generated docs and tasks are fresh, every entry point answers, and every
 * deployable example only uses settings, subcommands and binaries the roles really have.
 */
import assert from "node:assert/strict";
import { findStale, ROLE_SPECS } from "../tools/docs.ts";
import { denoRunArgs, roleInfo, type RoleName, ROLES } from "../lib/roles.ts";
import { VERSION } from "../lib/version.ts";
import { runRoleToEnd } from "../sim/role_process.ts";

const root = new URL("../", import.meta.url);

async function deno(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: root.pathname, env: { NO_COLOR: "1" } }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("generated docs, examples, BENCHMARKS.md and deno.json role tasks are up to date", async () => {
  const stale = await findStale();
  assert.deepEqual(stale.docs, [], "stale docs: run deno task docs");
  assert.deepEqual(stale.examples, [], "stale examples: run deno task docs");
  assert.deepEqual(stale.tasks, [], "deno.json tasks are stale: run deno task docs");
  assert.equal(stale.benchmarks, false, "BENCHMARKS.md is stale: run deno task docs");
});

Deno.test("main.ts --help names every role; an unknown role exits 2", async () => {
  const help = await deno(["run", "-A", "main.ts", "--help"]);
  assert.equal(help.code, 0);
  for (const role of ROLES) assert.match(help.stdout, new RegExp(`^  ${role.name} `, "m"));
  const unknown = await deno(["run", "-A", "main.ts", "bogus"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown role "bogus"/);
  assert.match((await deno(["run", "-A", "main.ts", "--version"])).stdout, /^ecs-lifecycle \d+\.\d+\.\d+/);
});

for (const role of ROLES) {
  Deno.test(`deno task ${role.name} --help exits 0 and documents every setting`, async () => {
    const out = await deno(["task", "-q", role.name, "--help"]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, new RegExp(`^usage: ${role.binary}`));
    for (const setting of Object.values(ROLE_SPECS[role.name])) {
      assert.ok(out.stdout.includes(`--${setting.flag}`), `--${setting.flag} missing from --help`);
      if (setting.env) assert.ok(out.stdout.includes(setting.env), `${setting.env} missing from --help`);
    }
  });
}

for (const role of ROLES) {
  Deno.test(`${role.binary} --help, piped, fits 80 columns and states each setting's accepted values`, async () => {
    const out = await runRoleToEnd(role.name, { args: ["--help"] });
    assert.equal(out.code, 0, out.stderr);
    for (const line of out.stdout.trimEnd().split("\n")) assert.ok(line.length <= 80, JSON.stringify(line));
    for (const setting of Object.values(ROLE_SPECS[role.name])) {
      if (setting.bounds) assert.ok(out.stdout.includes(`(${setting.bounds})`), `${setting.flag}: ${setting.bounds}`);
    }
  });
  Deno.test(`${role.binary} --version and main.ts ${role.name} --version print the version, whatever else is set`, async () => {
    const expected = `${role.binary} ${VERSION}\n`;
    // A bad setting and a missing required one must not stop the answer.
    const env = { LOG_LEVEL: "loud", DRAIN_DELAY: "soon" };
    const binary = await runRoleToEnd(role.name, { args: ["--version"], env });
    assert.equal(binary.code, 0, binary.stderr);
    assert.equal(binary.stdout, expected);
    const viaMain = await deno(["run", "-A", "main.ts", role.name, "--version"]);
    assert.equal(viaMain.code, 0, viaMain.stderr);
    assert.equal(viaMain.stdout, expected);
  });
}

Deno.test("the usage POLLING_FREQUENCY states its 1 s minimum in --help and the settings reference", async () => {
  const help = await runRoleToEnd("nlb-sidecar", { args: ["--help"] });
  assert.match(help.stdout, /--polling-frequency <seconds>\s+env POLLING_FREQUENCY\s+default 30\s+\(>= 1 s\)/);
  const reference = await Deno.readTextFile(new URL("docs/nlb-sidecar.md", root));
  assert.match(reference, /\|\s*`POLLING_FREQUENCY`\s*\|\s*`--polling-frequency`\s*\|\s*seconds \(>= 1 s\)\s*\|/);
});

/** `script` runs a command on a pseudo-terminal: how a test sees what an operator's terminal would show. */
const hasScript =
  new Deno.Command("sh", { args: ["-c", "command -v script stty"], stdout: "null" }).outputSync().success;

Deno.test({
  name: "--help on a terminal wraps to the terminal's width, not 80",
  ignore: !hasScript,
  fn: async () => {
    const role = roleInfo("nlb-sidecar")!;
    const command = [Deno.execPath(), ...denoRunArgs(role, ["--help"])].map((word) => `'${word}'`).join(" ");
    const out = await new Deno.Command("script", {
      args: ["-qec", `stty cols 120 rows 40; ${command}`, "/dev/null"],
      cwd: root.pathname,
      env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    // The terminal's line ends, and any cursor control the runtime writes first, are not the help's.
    const escape = String.fromCharCode(0x1b);
    const text = new TextDecoder().decode(out.stdout).replaceAll("\r", "")
      .replace(new RegExp(`${escape}\\[[0-9;]*[A-Za-z]`, "g"), "");
    const widths = text.trimEnd().split("\n").map((line) => line.length);
    assert.match(text, /^usage: ecs-nlb-sidecar/m);
    assert.ok(Math.max(...widths) > 80, `widest line ${Math.max(...widths)}: wrapped to 80, not to the terminal`);
    assert.ok(Math.max(...widths) <= 120, `widest line ${Math.max(...widths)}`);
  },
});

Deno.test("DEREGISTRATION_WAIT=abc: the sidecar exits 2 and names the setting", async () => {
  const out = await runRoleToEnd("nlb-sidecar", {
    env: { DEREGISTRATION_WAIT: "abc", ECS_CONTAINER_METADATA_URI_V4: "http://127.0.0.1:9/v4/x" },
  });
  assert.equal(out.code, 2);
  assert.match(out.stderr, /DEREGISTRATION_WAIT="abc"/);
  assert.equal(out.stderr.trim().split("\n").length, 1, "one line");
});

// ------------------------------------------------------------------------------------------ examples

interface ContainerDefinition {
  name: string;
  image: string;
  essential?: boolean;
  environment?: Array<{ name: string; value: string }>;
  healthCheck?: { command: string[] };
  command?: string[];
  dependsOn?: Array<{ containerName: string; condition: string }>;
  stopTimeout?: number;
  memory?: number;
  memoryReservation?: number;
}

const binaries = new Map(ROLES.map((r) => [r.binary, r.name]));

function roleOfImage(image: string): RoleName | undefined {
  const match = image.match(/ecs-lifecycle\/([a-z-]+)(:|$)/);
  return match && roleInfo(match[1]) ? match[1] as RoleName : undefined;
}

async function examples(folder: string, ending: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(new URL(folder, root))) {
    if (entry.isFile && entry.name.endsWith(ending)) found.push(`${folder}${entry.name}`);
  }
  return found.sort();
}

Deno.test("every task definition example uses real settings, health subcommands and binaries", async () => {
  const files = await examples("examples/", ".taskdef.json");
  assert.ok(files.length >= 3, `expected the Fargate, bridge and Envoy examples, found ${files}`);
  const seenRoles = new Set<RoleName>();
  for (const file of files) {
    const taskDefinition = JSON.parse(await Deno.readTextFile(new URL(file, root)));
    const containers = taskDefinition.containerDefinitions as ContainerDefinition[];
    assert.ok(Array.isArray(containers) && containers.length > 0, `${file}: containerDefinitions`);
    const names = new Set(containers.map((c) => c.name));
    for (const container of containers) {
      for (const dependency of container.dependsOn ?? []) {
        assert.ok(names.has(dependency.containerName), `${file}: dependsOn ${dependency.containerName}`);
        assert.ok(["START", "COMPLETE", "SUCCESS", "HEALTHY"].includes(dependency.condition), `${file}: condition`);
      }
      const role = roleOfImage(container.image);
      if (!role) continue;
      seenRoles.add(role);
      const envNames = new Set(Object.values(ROLE_SPECS[role]).map((s) => s.env).filter(Boolean));
      for (const variable of container.environment ?? []) {
        assert.ok(envNames.has(variable.name), `${file}: ${container.name} sets unknown ${variable.name}`);
      }
      const check = container.healthCheck?.command;
      assert.ok(check, `${file}: ${container.name} has a healthCheck`);
      assert.equal(check[0], "CMD", `${file}: distroless has no shell, so CMD not CMD-SHELL`);
      const binary = check[1].split("/").pop()!;
      assert.equal(binaries.get(binary), role, `${file}: health check runs ${check[1]}`);
      assert.equal(check[1], `/usr/local/bin/${binary}`, `${file}: the image puts binaries in /usr/local/bin`);
      assert.equal(check[2], "health", `${file}: health subcommand`);
      const help = await runRoleToEnd(role, { args: ["--help"] });
      assert.match(help.stdout, /^\s+health\s/m, `${role} has a health subcommand`);
    }
  }
  assert.deepEqual([...seenRoles].sort(), ["appmesh-helper", "nlb-sidecar"]);
});

Deno.test("IAM policy examples are well-formed and grant only what the sidecar calls", async () => {
  const allowed = new Set([
    "ecs:DescribeTasks",
    "ecs:DescribeServices",
    "ecs:DescribeContainerInstances",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "ec2:DescribeInstances",
  ]);
  // Actions the sidecar does without (it falls back), granted in a statement of their own that says so.
  const optional = new Set(["elasticloadbalancing:DescribeTargetGroupAttributes", "ecs:DescribeTaskDefinition"]);
  const files = await examples("examples/iam/", ".json");
  assert.ok(files.length >= 2, `expected IAM policies per network mode, found ${files}`);
  for (const file of files) {
    const policy = JSON.parse(await Deno.readTextFile(new URL(file, root)));
    assert.equal(policy.Version, "2012-10-17", file);
    for (const statement of policy.Statement) {
      assert.equal(statement.Effect, "Allow", file);
      const isOptional = String(statement.Sid).startsWith("Optional");
      for (const action of [statement.Action].flat()) {
        assert.ok((isOptional ? optional : allowed).has(action), `${file}: ${action} (statement ${statement.Sid})`);
      }
    }
  }
});

Deno.test("the systemd unit runs the sentry binary with flags it accepts", async () => {
  const unit = await Deno.readTextFile(new URL("deploy/ecs-network-sentry.service", root));
  const execStart = unit.match(/^ExecStart=(.+)$/m)?.[1];
  assert.ok(execStart, "ExecStart");
  const [binary, ...args] = execStart.split(/\s+/);
  assert.equal(binary, "/usr/local/bin/ecs-network-sentry");
  assert.match(unit, /^Restart=always$/m);
  assert.match(unit, /^After=.*docker\.service/m);
  assert.match(unit, /^After=.*ecs\.service/m);
  assert.match(unit, /^RestartPreventExitStatus=2$/m, "a configuration error must not restart forever");
  const memoryMax = Number(unit.match(/^MemoryMax=(\d+)M$/m)?.[1]);
  // Twice the highest peak at 300 containers (82 MiB in bench/network_sentry.ts) at least, never unbounded.
  assert.ok(memoryMax >= 164 && memoryMax <= 512, `MemoryMax=${memoryMax}M`);
  const flags = new Set(
    Object.values(ROLE_SPECS["network-sentry"]).flatMap((s) => [`--${s.flag}`, s.short ? `-${s.short}` : ""]),
  );
  for (const word of args.filter((a) => a.startsWith("-"))) {
    assert.ok(flags.has(word.split("=")[0]), `unit uses unknown flag ${word}`);
  }
});

Deno.test("make install puts the host's binary and a unit pointing at it under DESTDIR and PREFIX", async () => {
  const work = await Deno.makeTempDir({ prefix: "make-install-" });
  try {
    await Deno.mkdir(`${work}/src/dist/aarch64-unknown-linux-gnu`, { recursive: true });
    await Deno.mkdir(`${work}/src/deploy`);
    await Deno.copyFile(new URL("Makefile", root), `${work}/src/Makefile`);
    await Deno.copyFile(new URL("deno.json", root), `${work}/src/deno.json`);
    await Deno.copyFile(
      new URL("deploy/ecs-network-sentry.service", root),
      `${work}/src/deploy/ecs-network-sentry.service`,
    );
    await Deno.writeTextFile(`${work}/src/dist/aarch64-unknown-linux-gnu/ecs-network-sentry`, "arm64 build\n");
    const make = await new Deno.Command("make", {
      args: ["install", `DESTDIR=${work}/root`, "PREFIX=/opt/ecs", "TARGET=aarch64-unknown-linux-gnu"],
      cwd: `${work}/src`,
      env: { PATH: `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(make.code, 0, new TextDecoder().decode(make.stderr));
    const binary = `${work}/root/opt/ecs/bin/ecs-network-sentry`;
    assert.equal(await Deno.readTextFile(binary), "arm64 build\n", "the TARGET's binary");
    assert.equal((await Deno.stat(binary)).mode! & 0o777, 0o755);
    const unit = await Deno.readTextFile(`${work}/root/etc/systemd/system/ecs-network-sentry.service`);
    assert.match(unit, /^ExecStart=\/opt\/ecs\/bin\/ecs-network-sentry /m, "ExecStart follows PREFIX");
    assert.match(unit, /^RestartPreventExitStatus=2$/m);
    await assert.rejects(Deno.stat(`${work}/src/.tools`), "nothing is written into the source tree");
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
