import assert from "node:assert/strict";
import { ConfigError, seconds, text } from "../../lib/config.ts";
import { ExitCode, type RoleProgram, runRole, Shutdown } from "../../lib/lifecycle.ts";
import { logFormatSetting, logLevelSetting } from "../../lib/log.ts";
import { ROLES } from "../../lib/roles.ts";

const spec = {
  wait: seconds({ env: "WAIT", flag: "wait", help: "how long to wait", default: 0 }),
  name: text({ env: "NAME", flag: "name", help: "a name" }),
  logLevel: logLevelSetting(),
  logFormat: logFormatSetting(),
};

function program(run: RoleProgram<typeof spec>["run"]): RoleProgram<typeof spec> {
  return {
    info: ROLES[0],
    spec,
    subcommands: { health: "exit 0 when healthy" },
    validate: (config) => config.name === "forbidden" ? [new ConfigError("NAME", config.name, "is not allowed")] : [],
    run,
  };
}

async function runCaptured(
  p: RoleProgram<typeof spec>,
  args: string[],
  env: Record<string, string> = {},
  stop?: AbortSignal,
) {
  const printed: Record<"stdout" | "stderr", string> = { stdout: "", stderr: "" };
  const logs: Record<string, unknown>[] = [];
  const code = await runRole(p, {
    args,
    env,
    stop,
    print: (text, stream) => printed[stream] += text,
    logWrite: (line) => logs.push(JSON.parse(line)),
  });
  return { code, ...printed, logs };
}

Deno.test("a bad setting prints one line naming it and exits 2 without running the role", async () => {
  let ran = false;
  const out = await runCaptured(program(() => (ran = true, Promise.resolve(0))), [], { WAIT: "abc" });
  assert.equal(out.code, ExitCode.Config);
  assert.equal(
    out.stderr,
    'ecs-nlb-sidecar: configuration error: WAIT="abc": expected a non-negative number of seconds\n',
  );
  assert.equal(ran, false);
});

Deno.test("cross-setting validation errors also exit 2", async () => {
  const out = await runCaptured(program(() => Promise.resolve(0)), ["--name", "forbidden"]);
  assert.equal(out.code, ExitCode.Config);
  assert.match(out.stderr, /NAME="forbidden": is not allowed/);
});

Deno.test("every configuration error is printed at once, one line each, and the exit is still 2", async () => {
  let ran = false;
  const out = await runCaptured(
    program(() => (ran = true, Promise.resolve(0))),
    ["bogus", "--nope", "--name", "forbidden"],
    { WAIT: "abc", LOG_LEVEL: "loud" },
  );
  assert.equal(out.code, ExitCode.Config);
  assert.deepEqual(out.stderr.trimEnd().split("\n"), [
    "ecs-nlb-sidecar: configuration error: --nope: unknown flag (see --help)",
    'ecs-nlb-sidecar: configuration error: WAIT="abc": expected a non-negative number of seconds',
    'ecs-nlb-sidecar: configuration error: LOG_LEVEL="loud": expected one of debug, info, warning, error',
    "ecs-nlb-sidecar: configuration error: bogus: unknown subcommand (see --help)",
    'ecs-nlb-sidecar: configuration error: NAME="forbidden": is not allowed',
  ]);
  assert.equal(ran, false);
});

Deno.test("a cross-setting check about a setting that already failed is not reported a second time", async () => {
  const checked: RoleProgram<typeof spec> = {
    ...program(() => Promise.resolve(0)),
    validate: (config) =>
      config.wait === 0 ? [new ConfigError("WAIT (or --wait)", undefined, "must be set with NAME")] : [],
  };
  const out = await runCaptured(checked, [], { WAIT: "abc" });
  assert.equal(out.code, ExitCode.Config);
  assert.equal(out.stderr.trimEnd().split("\n").length, 1, out.stderr);
  assert.match(out.stderr, /WAIT="abc"/);
});

Deno.test("--help wraps to the width asked for", async () => {
  const printed: string[] = [];
  await runRole(program(() => Promise.resolve(0)), {
    args: ["--help"],
    helpWidth: 50,
    print: (text) => printed.push(text),
  });
  for (const line of printed.join("").trimEnd().split("\n")) assert.ok(line.length <= 50, JSON.stringify(line));
});

Deno.test("unknown subcommands and extra words exit 2", async () => {
  assert.equal((await runCaptured(program(() => Promise.resolve(0)), ["bogus"])).code, ExitCode.Config);
  assert.equal((await runCaptured(program(() => Promise.resolve(0)), ["health", "extra"])).code, ExitCode.Config);
});

Deno.test("--help and --version print and exit 0", async () => {
  const help = await runCaptured(program(() => Promise.resolve(1)), ["--help"]);
  assert.equal(help.code, ExitCode.Ok);
  assert.match(help.stdout, /^usage: ecs-nlb-sidecar \[health\] \[flags\]/);
  assert.match(help.stdout, /--wait <seconds>\s+env WAIT\s+default 0/);
  assert.match(help.stdout, /^exit codes: 0 done, 1 runtime failure \(or unhealthy\), 2 configuration error$/m);
  const version = await runCaptured(program(() => Promise.resolve(1)), ["--version"]);
  assert.match(version.stdout, /^ecs-nlb-sidecar \d+\.\d+\.\d+\n$/);
});

Deno.test("the daemon logs one start-up line with its settings, then the role's exit code is returned", async () => {
  const out = await runCaptured(program(({ config }) => Promise.resolve(config.wait === 1.5 ? 0 : 1)), [
    "--wait",
    "1.5",
    "--name",
    "https://user:secret@proxy.example:3128",
  ]);
  assert.equal(out.code, 0);
  assert.equal(out.logs[0].message, "starting ecs-nlb-sidecar " + (out.logs[0].version as string));
  const settings = out.logs[0].settings as Record<string, unknown>;
  assert.equal(settings.wait, 1.5);
  assert.equal(settings.name, "https://***@proxy.example:3128", "credentials in URLs are masked");
});

Deno.test("subcommands run without the start-up line", async () => {
  const out = await runCaptured(program(({ subcommand }) => Promise.resolve(subcommand === "health" ? 0 : 1)), [
    "health",
  ]);
  assert.equal(out.code, 0);
  assert.equal(out.logs.length, 0);
});

Deno.test("an unexpected error is logged as fatal and exits 1", async () => {
  const out = await runCaptured(program(() => Promise.reject(new Error("kaboom"))), []);
  assert.equal(out.code, ExitCode.Failure);
  const fatal = out.logs.find((l) => l.level === "fatal");
  assert.match(String(fatal?.message), /kaboom/);
});

Deno.test("a stop request reaches the role as an aborted shutdown signal", async () => {
  const stop = new AbortController();
  setTimeout(() => stop.abort(), 20);
  const out = await runCaptured(
    program(async ({ shutdown }) => {
      await new Promise((resolve) => shutdown.signal.addEventListener("abort", resolve));
      return shutdown.signal.reason === "SIGTERM" ? 0 : 1;
    }),
    [],
    {},
    stop.signal,
  );
  assert.equal(out.code, 0);
});

Deno.test("Shutdown counts every signal and aborts once", () => {
  using shutdown = new Shutdown([]);
  const seen: string[] = [];
  shutdown.onSignal((name, count) => seen.push(`${name}#${count}`));
  shutdown.trigger("SIGTERM");
  shutdown.trigger("SIGINT");
  assert.equal(shutdown.signal.aborted, true);
  assert.equal(shutdown.signal.reason, "SIGTERM");
  assert.deepEqual(seen, ["SIGTERM#1", "SIGINT#2"]);
});
