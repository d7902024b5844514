/** `ecs-appmesh-helper health` as ECS runs it: its own process, one JSON line, exit 0 or 1. */
import assert from "node:assert/strict";
import { unusedPort } from "../../sim/downstream.ts";
import { type EnvoyInitState, startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { startSimServer } from "../../sim/http_server.ts";
import { runRoleToEnd } from "../../sim/role_process.ts";

interface Case {
  readonly name: string;
  readonly init?: EnvoyInitState;
  readonly healthcheckFailed?: boolean;
  readonly envoyDown?: boolean;
  /** The app's health check status; `"down"` for nothing listening; absent for no app check. */
  readonly app?: number | "down";
  readonly code: number;
  readonly envoyAnswer: RegExp;
}

const cases: Case[] = [
  { name: "Envoy LIVE", code: 0, envoyAnswer: /^LIVE$/ },
  { name: "Envoy DRAINING", healthcheckFailed: true, code: 1, envoyAnswer: /^DRAINING$/ },
  { name: "Envoy PRE_INITIALIZING", init: "PRE_INITIALIZING", code: 1, envoyAnswer: /^PRE_INITIALIZING$/ },
  { name: "Envoy INITIALIZING", init: "INITIALIZING", code: 1, envoyAnswer: /^INITIALIZING$/ },
  { name: "Envoy down", envoyDown: true, code: 1, envoyAnswer: /did not answer/ },
  { name: "Envoy LIVE, app 200", app: 200, code: 0, envoyAnswer: /^LIVE$/ },
  { name: "Envoy LIVE, app 302", app: 302, code: 0, envoyAnswer: /^LIVE$/ },
  { name: "Envoy LIVE, app 500", app: 500, code: 1, envoyAnswer: /^LIVE$/ },
  { name: "Envoy LIVE, app down", app: "down", code: 1, envoyAnswer: /^LIVE$/ },
  { name: "Envoy INITIALIZING, app 200", init: "INITIALIZING", app: 200, code: 1, envoyAnswer: /^INITIALIZING$/ },
];

async function runCase(c: Case) {
  await using envoy = await startEnvoyEmulator({ init: c.init });
  envoy.healthcheckFailed = c.healthcheckFailed ?? false;
  await using app = await startSimServer({
    handle: () => ({ status: c.app as number, headers: { location: "/elsewhere" }, body: "" }),
  });
  const env: Record<string, string> = {
    ENVOY_ADMIN_URL: c.envoyDown ? `http://127.0.0.1:${unusedPort()}` : envoy.adminUrl,
  };
  if (c.app !== undefined) env.APP_HEALTHCHECK_URL = `http://127.0.0.1:${c.app === "down" ? unusedPort() : app.port}/h`;
  const result = await runRoleToEnd("appmesh-helper", { args: ["health"], env });
  const lines = result.stdout.trim().split("\n");
  assert.equal(lines.length, 1, `${c.name}: one log line, got ${result.stdout}${result.stderr}`);
  return { result, line: JSON.parse(lines[0]), appRequests: app.requestCount };
}

Deno.test("health: exit 0 only when Envoy is LIVE and the configured app answers 2xx/3xx", async () => {
  const outcomes = await Promise.all(cases.map(runCase));
  cases.forEach((c, i) => {
    const { result, line, appRequests } = outcomes[i];
    assert.equal(result.code, c.code, `${c.name}: ${result.stdout}${result.stderr}`);
    assert.equal(line.step, "health", c.name);
    assert.equal(line.healthy, c.code === 0, c.name);
    assert.equal(line.level, c.code === 0 ? "info" : "warning", c.name);
    assert.match(line.envoyAnswer, c.envoyAnswer, c.name);
    if (typeof c.app === "number") {
      assert.equal(line.appAnswer, `HTTP ${c.app}`, `${c.name}: redirects are the app's answer, not followed`);
      assert.equal(appRequests, 1, c.name);
    }
    if (c.app === undefined) assert.equal(line.appAnswer, undefined, `${c.name}: no app check configured`);
  });
});
