import assert from "node:assert/strict";
import {
  checkSettings,
  ConfigError,
  integer,
  isRegionName,
  MAX_SECONDS,
  oneOf,
  parseSettings,
  renderHelp,
  seconds,
  text,
  toggle,
  url,
  wrapLine,
} from "../../lib/config.ts";
import { logLevelSetting } from "../../lib/log.ts";

const spec = {
  wait: seconds({ env: "WAIT", flag: "wait", help: "how long", default: 120 }),
  quiet: seconds({ env: "QUIET", flag: "quiet", help: "optional" }),
  retries: integer({ env: "RETRIES", flag: "retries", short: "n", help: "count", default: 0, min: 0, max: 10 }),
  mode: oneOf({ env: "MODE", flag: "mode", help: "mode", choices: ["fixed", "connections"], default: "fixed" }),
  region: text({ env: "REGION", flag: "region", short: "r", help: "region", required: true }),
  admin: url({ env: "ADMIN_URL", flag: "admin-url", help: "url", default: "http://127.0.0.1:9901" }),
  dryRun: toggle({ flag: "dry-run", help: "do nothing" }),
  logLevel: logLevelSetting({ env: "LOG_LEVEL", flag: "loglevel", short: "k" }),
};

function parse(args: string[], env: Record<string, string> = {}) {
  return parseSettings(spec, { args, env: { REGION: "eu-west-1", ...env } });
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("defaults apply when neither flag nor env is set", () => {
  const { config } = parse([]);
  assert.equal(config.wait, 120);
  assert.equal(config.quiet, undefined);
  assert.equal(config.retries, 0);
  assert.equal(config.mode, "fixed");
  assert.equal(config.admin, "http://127.0.0.1:9901");
  assert.equal(config.dryRun, false);
  assert.equal(config.logLevel, "info");
});

Deno.test("flags override env; short flags work; decimals are accepted", () => {
  const { config } = parse(["--wait", "0.5", "-n", "3", "-r", "ap-southeast-2", "--dry-run"], {
    WAIT: "30",
    RETRIES: "1",
  });
  assert.equal(config.wait, 0.5);
  assert.equal(config.retries, 3);
  assert.equal(config.region, "ap-southeast-2");
  assert.equal(config.dryRun, true);
});

Deno.test("env values are used and enum matching is case-insensitive", () => {
  const { config } = parse([], { WAIT: "30", MODE: "Connections", LOG_LEVEL: "WARNING" });
  assert.equal(config.wait, 30);
  assert.equal(config.mode, "connections");
  assert.equal(config.logLevel, "warning");
});

Deno.test("Python log level names are accepted", () => {
  assert.equal(parse(["-k", "logging.DEBUG"]).config.logLevel, "debug");
  assert.equal(parse(["-k", "CRITICAL"]).config.logLevel, "error");
  assert.equal(parse(["-k", "WARN"]).config.logLevel, "warning");
});

Deno.test("a non-numeric duration names the env setting and the value", () => {
  const error = configError(() => parse([], { WAIT: "abc" }));
  assert.equal(error.setting, "WAIT");
  assert.match(error.message, /^WAIT="abc": /);
});

Deno.test("negative durations and units are rejected", () => {
  assert.equal(configError(() => parse(["--wait", "-1"])).setting, "--wait");
  assert.match(configError(() => parse(["--wait=-1"])).message, /^--wait="-1": expected a non-negative/);
  assert.equal(configError(() => parse([], { WAIT: "10s" })).setting, "WAIT");
});

Deno.test("durations longer than any timer can hold are rejected, the limit itself is accepted", () => {
  assert.equal(parse(["--wait", String(MAX_SECONDS)]).config.wait, MAX_SECONDS);
  const error = configError(() => parse([], { WAIT: "2147484" }));
  assert.equal(error.setting, "WAIT");
  assert.match(error.message, /^WAIT="2147484": expected at most 1000000 seconds/);
});

Deno.test("integers outside their bounds are rejected", () => {
  assert.match(configError(() => parse(["-n", "11"])).message, /from 0 to 10/);
  assert.equal(configError(() => parse([], { RETRIES: "1.5" })).setting, "RETRIES");
});

Deno.test("bad enum values list the choices", () => {
  const error = configError(() => parse([], { MODE: "sometimes" }));
  assert.equal(error.setting, "MODE");
  assert.match(error.message, /fixed, connections/);
});

Deno.test("bad URLs are rejected", () => {
  assert.equal(configError(() => parse([], { ADMIN_URL: "localhost:9901" })).setting, "ADMIN_URL");
  assert.equal(configError(() => parse([], { ADMIN_URL: "ftp://x" })).setting, "ADMIN_URL");
});

Deno.test("region names: every partition's form is accepted; zones, other spellings and words are not", () => {
  for (const name of ["eu-west-1", "us-east-1", "us-gov-west-1", "cn-north-1", "ap-southeast-3", "us-isob-east-1"]) {
    assert.equal(isRegionName(name), true, name);
  }
  for (const name of ["mars", "Europe", "EU-WEST-1", "eu-west", "eu-west-1a", "eu_west_1", " eu-west-1", ""]) {
    assert.equal(isRegionName(name), false, JSON.stringify(name));
  }
});

Deno.test("a missing required setting names both env and flag", () => {
  const error = configError(() => parseSettings(spec, { args: [], env: {} }));
  assert.match(error.message, /REGION \(or --region\): is required/);
});

Deno.test("unknown flags and missing flag values are configuration errors", () => {
  assert.equal(configError(() => parse(["--bogus"])).setting, "--bogus");
  assert.equal(configError(() => parse(["--wait"])).setting, "--wait");
  assert.equal(configError(() => parse(["--dry-run=yes"])).setting, "--dry-run");
});

Deno.test("an empty env value means unset, so defaults still apply", () => {
  assert.equal(parse([], { WAIT: "" }).config.wait, 120);
});

Deno.test("positionals, --help and --version are reported, not treated as settings", () => {
  const parsed = parse(["health", "--help"]);
  assert.deepEqual(parsed.positionals, ["health"]);
  assert.equal(parsed.help, true);
  assert.equal(parse(["--version"]).version, true);
});

Deno.test("help lists every setting with its env name and default", () => {
  const help = renderHelp("x [flags]", "summary", spec);
  for (const setting of Object.values(spec)) {
    assert.ok(help.includes(`--${setting.flag}`), setting.flag);
    if (setting.env) assert.ok(help.includes(`env ${setting.env}`), setting.env);
  }
  assert.match(help, /--wait <seconds>\s+env WAIT\s+default 120/);
  assert.match(help, /-r, --region <text>\s+env REGION\s+default \(required\)/);
});

Deno.test("checkSettings lists every bad flag and value, in order; a bad setting keeps its default", () => {
  const checked = checkSettings(spec, {
    args: ["--bogus", "-n", "12", "--dry-run=yes", "--admin-url", "-x", "--wait"],
    env: { QUIET: "soon", MODE: "sometimes" },
  });
  assert.deepEqual(checked.errors.map((e) => e.message), [
    "--bogus: unknown flag (see --help)",
    "--dry-run: is a switch and takes no value",
    "--admin-url: needs a value (write --admin-url=VALUE for one starting with -)",
    "--wait: needs a value",
    'QUIET="soon": expected a non-negative number of seconds',
    '--retries="12": expected a whole number from 0 to 10',
    'MODE="sometimes": expected one of fixed, connections',
    "REGION (or --region): is required",
  ]);
  assert.deepEqual([...checked.failed].sort(), ["admin", "dryRun", "mode", "quiet", "region", "retries", "wait"]);
  assert.equal(checked.config.wait, 120, "the default stands in for a bad value");
  assert.equal(checked.config.mode, "fixed");
});

Deno.test("checkSettings: --help and --version answer whatever else is wrong", () => {
  assert.deepEqual(checkSettings(spec, { args: ["--bogus", "--help"], env: {} }).errors, []);
  assert.deepEqual(checkSettings(spec, { args: ["--version"], env: { WAIT: "x" } }).errors, []);
});

Deno.test("bounds: seconds above or from a floor and integer ranges are enforced and stated", () => {
  const bounded = {
    interval: seconds({ flag: "interval", help: "probe interval", default: 20, above: 0 }),
    period: seconds({ flag: "period", help: "at least one second", default: 5, min: 1 }),
    port: integer({ flag: "port", help: "a port", min: 1, max: 65535 }),
    count: integer({ flag: "count", help: "any count", default: 0 }),
  };
  const errors = checkSettings(bounded, { args: ["--interval", "0", "--period", "0.5"], env: {} }).errors;
  assert.deepEqual(errors.map((e) => e.message), [
    '--interval="0": expected more than 0 seconds',
    '--period="0.5": expected at least 1 seconds',
  ]);
  assert.equal(checkSettings(bounded, { args: ["--interval", "0.1", "--period", "1"], env: {} }).errors.length, 0);
  const help = renderHelp("x", "summary", bounded);
  const lines = help.split("\n");
  assert.ok(lines.includes("  --interval <seconds>  default 20  (> 0 s)"), help);
  assert.ok(lines.includes("  --period <seconds>  default 5  (>= 1 s)"), help);
  assert.ok(lines.includes("  --port <integer>  default (unset)  (1-65535)"), help);
  assert.ok(lines.includes("  --count <integer>  default 0  (>= 0)"), help);
});

Deno.test("help wraps to the width it is given, continuation lines indented under their text", () => {
  const long = {
    wait: seconds({
      env: "A_LONG_ENVIRONMENT_NAME",
      flag: "a-rather-long-flag-name",
      default: 120,
      min: 1,
      help: "Seconds to wait after the target starts draining before exiting, said in far more words than fit.",
    }),
  };
  for (const width of [40, 60, 80, 120]) {
    const help = renderHelp(
      "x [flags]",
      "A summary that is long enough to need wrapping at forty columns.",
      long,
      [
        "subcommands:",
        "  health  exit 0 while discovering, while polls complete with an answer, or while draining",
      ].join("\n"),
      width,
    );
    for (const line of help.trimEnd().split("\n")) assert.ok(line.length <= width, `${width}: ${JSON.stringify(line)}`);
    assert.ok(help.includes("(>= 1 s)"), "the minimum is stated");
  }
  const narrow = renderHelp("x", "s", long, "  health  exit 0 while discovering, while polls complete", 40);
  assert.ok(narrow.split("\n").includes("  health  exit 0 while discovering,"), narrow);
  assert.match(narrow, /^ {10}while polls complete$/m, "continued under the text, not under the name");
  assert.match(narrow, /^ {6}Seconds to wait after the target/m);
});

Deno.test("wrapLine keeps a word longer than the width whole, and never returns an empty line for text", () => {
  assert.deepEqual(wrapLine("aaaa bbbbbbbbbbbbbbbbbbbb cc", 10, 2), ["aaaa", "  bbbbbbbbbbbbbbbbbbbb", "  cc"]);
  assert.deepEqual(wrapLine("  one two", 80), ["  one two"]);
});
