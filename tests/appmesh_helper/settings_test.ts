import assert from "node:assert/strict";
import { ConfigError, parseSettings } from "../../lib/config.ts";
import { runRole } from "../../lib/lifecycle.ts";
import { DRAIN_MODES } from "../../lib/appmesh_helper/machine.ts";
import { appmeshHelperProgram } from "../../lib/appmesh_helper/program.ts";
import {
  appHealthUrl,
  appmeshHelperSettings,
  settingWarnings,
  validateSettings,
} from "../../lib/appmesh_helper/settings.ts";

function parse(env: Record<string, string>, args: string[] = []) {
  const { config } = parseSettings(appmeshHelperSettings, { args, env });
  const [first] = validateSettings(config);
  if (first) throw first;
  return config;
}

function configError(env: Record<string, string>, args: string[] = []): ConfigError {
  try {
    parse(env, args);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)} ${args.join(" ")}`);
}

Deno.test("defaults: the original helper's 40 + 40 s, fixed mode, App Mesh's admin port and ingress", () => {
  const config = parse({});
  assert.equal(config.drainDelay, 40);
  assert.equal(config.drainTimeout, 40);
  assert.equal(config.drainMode, "fixed");
  assert.equal(config.drainQuietPeriod, 3);
  assert.equal(config.envoyAdminUrl, "http://127.0.0.1:9901");
  assert.equal(config.envoyIngressListener, "15000");
  assert.equal(appHealthUrl(config), undefined, "no app check unless one is configured");
  assert.deepEqual(settingWarnings(config), []);
});

Deno.test("the app's health check: APP_HEALTHCHECK_URL, or the original PORT + HEALTHCHECK_PATH on 127.0.0.1", () => {
  assert.equal(
    appHealthUrl(parse({ PORT: "8080", HEALTHCHECK_PATH: "/health?deep=1" })),
    "http://127.0.0.1:8080/health?deep=1",
  );
  assert.equal(appHealthUrl(parse({ APP_HEALTHCHECK_URL: "http://app:3000/ping" })), "http://app:3000/ping");
  assert.equal(appHealthUrl(parse({}, ["--port", "81", "--healthcheck-path", "/up"])), "http://127.0.0.1:81/up");
});

Deno.test("half an app health check, or two of them, is a configuration error naming the setting", () => {
  assert.match(configError({ PORT: "8080" }).message, /^HEALTHCHECK_PATH .*is required when PORT is set/);
  assert.match(
    configError({ HEALTHCHECK_PATH: "/health" }).message,
    /^PORT .*is required when HEALTHCHECK_PATH is set/,
  );
  assert.match(
    configError({ APP_HEALTHCHECK_URL: "http://127.0.0.1:1/h", PORT: "1", HEALTHCHECK_PATH: "/h" }).message,
    /^APP_HEALTHCHECK_URL=.*not both/,
  );
});

Deno.test("bad values are configuration errors naming the setting", () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ DRAIN_DELAY: "-1" }, /^DRAIN_DELAY="-1"/],
    [{ DRAIN_TIMEOUT: "forty" }, /^DRAIN_TIMEOUT="forty"/],
    [{ DRAIN_MODE: "sometimes" }, /^DRAIN_MODE="sometimes": expected one of fixed, connections/],
    [{ DRAIN_QUIET_PERIOD: "3s" }, /^DRAIN_QUIET_PERIOD="3s"/],
    [{ ENVOY_ADMIN_URL: "127.0.0.1:9901" }, /^ENVOY_ADMIN_URL=/],
    [{ ENVOY_ADMIN_URL: "http://127.0.0.1:9901?x=1" }, /^ENVOY_ADMIN_URL=.*: expected no query or fragment/],
    [{ ENVOY_ADMIN_URL: "http://127.0.0.1:9901/#top" }, /^ENVOY_ADMIN_URL=.*: expected no query or fragment/],
    [{ ENVOY_ADMIN_URL: "unix://tmp/envoy_admin.sock" }, /^ENVOY_ADMIN_URL=.*: expected unix:\/\/ and an absolute/],
    [{ ENVOY_ADMIN_URL: "unix:///tmp/" }, /^ENVOY_ADMIN_URL=.*: expected unix:\/\/ and an absolute socket path/],
    [{ ENVOY_INGRESS_LISTENER: "0" }, /^ENVOY_INGRESS_LISTENER="0": expected a port from 1 to 65535/],
    [{ ENVOY_INGRESS_LISTENER: "ingress listener" }, /^ENVOY_INGRESS_LISTENER=/],
    [{ PORT: "70000", HEALTHCHECK_PATH: "/h" }, /^PORT="70000"/],
    [{ PORT: "8080", HEALTHCHECK_PATH: "health" }, /^HEALTHCHECK_PATH="health": expected a path starting with \//],
  ];
  for (const [env, message] of cases) assert.match(configError(env).message, message, JSON.stringify(env));
});

Deno.test("ENVOY_ADMIN_URL that is no URL names every form it accepts, the unix:// one included", () => {
  for (const value of ["127.0.0.1:9901", "ftp://envoy:9901", "envoy_admin.sock"]) {
    const error = configError({ ENVOY_ADMIN_URL: value });
    assert.match(error.message, /http:\/\/host:port/, value);
    assert.match(error.message, /unix:\/\/\/path\/to\/admin\.sock/, value);
  }
});

Deno.test("ENVOY_ADMIN_URL: http(s) with an optional path prefix, or a unix socket path", () => {
  assert.equal(parse({ ENVOY_ADMIN_URL: "http://envoy:9901/" }).envoyAdminUrl, "http://envoy:9901");
  assert.equal(parse({ ENVOY_ADMIN_URL: "https://envoy/admin" }).envoyAdminUrl, "https://envoy/admin");
  assert.equal(
    parse({ ENVOY_ADMIN_URL: "unix:///tmp/envoy_admin.sock" }).envoyAdminUrl,
    "unix:///tmp/envoy_admin.sock",
  );
});

Deno.test("DRAIN_MODE's choices are the machine's drain modes, named once", () => {
  assert.equal(appmeshHelperSettings.drainMode.type, DRAIN_MODES.join("|"));
});

Deno.test("ENVOY_INGRESS_LISTENER accepts a port or a stats name, with : written as Envoy writes it", () => {
  assert.equal(parse({ ENVOY_INGRESS_LISTENER: "8080" }).envoyIngressListener, "8080");
  assert.equal(parse({ ENVOY_INGRESS_LISTENER: "0.0.0.0:15000" }).envoyIngressListener, "0.0.0.0_15000");
  assert.equal(parse({ ENVOY_INGRESS_LISTENER: "[::]:15000" }).envoyIngressListener, "[__]_15000");
  assert.equal(parse({ ENVOY_INGRESS_LISTENER: "ingress_http" }).envoyIngressListener, "ingress_http");
});

Deno.test("warnings: more than 110 s in all, and a quiet period that can never end a drain early", () => {
  assert.deepEqual(settingWarnings(parse({ DRAIN_DELAY: "55", DRAIN_TIMEOUT: "55" })), []);
  const [overBudget] = settingWarnings(parse({ DRAIN_DELAY: "100", DRAIN_TIMEOUT: "20" }));
  assert.match(overBudget, /DRAIN_DELAY \+ DRAIN_TIMEOUT is 120 s: ECS caps stopTimeout at 120 s/);
  const [quiet] = settingWarnings(parse({ DRAIN_MODE: "connections", DRAIN_QUIET_PERIOD: "5", DRAIN_TIMEOUT: "5" }));
  assert.match(quiet, /DRAIN_QUIET_PERIOD is not shorter than DRAIN_TIMEOUT/);
  assert.deepEqual(
    settingWarnings(parse({ DRAIN_QUIET_PERIOD: "50" })),
    [],
    "the quiet period only matters in connections mode",
  );
});

Deno.test("runRole: a bad setting exits 2 with one stderr line naming it; an unknown subcommand too", async () => {
  const printed: string[] = [];
  const print = (text: string) => printed.push(text);
  assert.equal(await runRole(appmeshHelperProgram, { args: [], env: { PORT: "8080" }, print }), 2);
  assert.equal(await runRole(appmeshHelperProgram, { args: ["healthz"], env: {}, print }), 2);
  assert.deepEqual(printed, [
    "ecs-appmesh-helper: configuration error: HEALTHCHECK_PATH (or --healthcheck-path): is required when PORT is set\n",
    "ecs-appmesh-helper: configuration error: healthz: unknown subcommand (see --help)\n",
  ]);
});
