/**
 * appmesh-helper demo: a task stops while downstreams still hold connections to its Envoy. The helper
 * waits DRAIN_DELAY, fails Envoy's health check, drains the inbound listener, and exits as soon as the
 * last inbound connection has been gone for DRAIN_QUIET_PERIOD, long before DRAIN_DELAY + DRAIN_TIMEOUT.
 * As with real Envoy, the drain closes a connection only after its next answer; idle keep-alives close
 * when their downstreams close them.
 * @module
 */
import type { Narrator, Scenario } from "./scenario.ts";
import { DownstreamConnection } from "../sim/downstream.ts";
import { startEnvoyEmulator } from "../sim/envoy_admin.ts";
import { startSimServer } from "../sim/http_server.ts";
import { spawnRole } from "../sim/role_process.ts";

const DRAIN_DELAY_S = 1;
const DRAIN_TIMEOUT_S = 8;
const QUIET_PERIOD_S = 1;
const SLOW_REQUEST_MS = 3_000;

async function run(say: Narrator["say"]) {
  await using envoy = await startEnvoyEmulator({ init: "INITIALIZING" });
  await using app = await startSimServer({ handle: () => ({ status: 200, body: "ok\n" }) });
  await using helper = spawnRole("appmesh-helper", {
    env: {
      DRAIN_MODE: "connections",
      DRAIN_DELAY: String(DRAIN_DELAY_S),
      DRAIN_TIMEOUT: String(DRAIN_TIMEOUT_S),
      DRAIN_QUIET_PERIOD: String(QUIET_PERIOD_S),
      ENVOY_ADMIN_URL: envoy.adminUrl,
      PORT: String(app.port),
      HEALTHCHECK_PATH: "/health",
    },
  });
  say(
    `helper started: DRAIN_MODE=connections, DRAIN_DELAY=${DRAIN_DELAY_S}, DRAIN_TIMEOUT=${DRAIN_TIMEOUT_S}, ` +
      `DRAIN_QUIET_PERIOD=${QUIET_PERIOD_S}; Envoy is still INITIALIZING`,
  );
  const waiting = await helper.waitForLog((l) => l.step === "envoy-startup");
  say(`helper: "${waiting.message}" (Envoy answers ${waiting.envoyAnswer})`);
  envoy.init = "INITIALIZED";
  await helper.waitForLog((l) => l.step === "envoy-startup" && l.envoyAnswer === "LIVE");
  say("Envoy reports LIVE; helper logs it, and its health subcommand would now pass");
  await helper.waitForLog((l) => l.step === "startup-complete");

  const idle = await Promise.all([1, 2].map(() => DownstreamConnection.open(envoy.ingressPort)));
  for (const connection of idle) await connection.request("/");
  const busy = await DownstreamConnection.open(envoy.ingressPort);
  const slowAnswer = busy.request(`/slow?ms=${SLOW_REQUEST_MS}`);
  say(`downstreams hold ${envoy.activeIngressConnections} connections: 2 idle keep-alive, 1 request in flight`);

  const signalledAt = Date.now();
  helper.kill("SIGTERM");
  say("ECS stops the task: SIGTERM to the helper");
  const fail = await helper.waitForLog((l) => l.step === "healthcheck-fail");
  say(`POST /healthcheck/fail after ${fail.waitedSeconds} s: Envoy is now ${envoy.state}`);
  await helper.waitForLog((l) => l.step === "drain-listeners");
  say("POST /drain_listeners?graceful&inboundonly&skip_exit: Envoy keeps accepting, and keeps idle keep-alives open");
  const next = await idle[0].request("/");
  say(
    `one downstream sends another request: answered with Connection: ${next.connectionClose ? "close" : "keep-alive"}`,
  );
  idle[1].close();
  say("the other downstream closes its pooled connection: this endpoint has left its service discovery");
  await Promise.all(idle.map((c) => c.ended));
  // The emulated listener sees each close a moment after its client does.
  while (envoy.activeIngressConnections > 1) await new Promise((r) => setTimeout(r, 10));
  say(`${envoy.activeIngressConnections} connection left: the request in flight is served to its end`);
  const answer = await slowAnswer;
  const lastClosedAt = await busy.ended;
  say(
    `the long request ends with HTTP ${answer.status}, Connection: ${answer.connectionClose ? "close" : "keep-alive"}`,
  );
  const exit = await helper.exited;
  const afterLast = (exit.at - lastClosedAt) / 1000;
  const total = (exit.at - signalledAt) / 1000;
  say(
    `helper exits ${exit.code}: ${afterLast.toFixed(1)} s after the last connection closed, ${
      total.toFixed(1)
    } s after SIGTERM`,
  );
  return { failSeconds: Number(fail.waitedSeconds), afterLast, total, code: exit.code };
}

export const scenario: Scenario = {
  title: "appmesh-helper: drain Envoy, exit when connections are gone",
  intro: "A task behind an Envoy sidecar is stopped while downstreams hold connections. The helper fails " +
    "Envoy's health check after DRAIN_DELAY and exits once the ingress listener has been quiet.",
  async run(narrator) {
    const seen = await run((text) => narrator.say(text));
    const budget = DRAIN_DELAY_S + DRAIN_TIMEOUT_S;
    return {
      expected: `fail call at ~${DRAIN_DELAY_S} s, exit <= ${QUIET_PERIOD_S + 1} s after the last connection, ` +
        `before ${budget} s`,
      observed: `fail call at ${seen.failSeconds.toFixed(1)} s, exit ${seen.afterLast.toFixed(1)} s after the last ` +
        `connection, ${seen.total.toFixed(1)} s in all, exit code ${seen.code}`,
      ok: seen.code === 0 && seen.failSeconds >= DRAIN_DELAY_S && seen.failSeconds < DRAIN_DELAY_S + 1 &&
        seen.afterLast <= QUIET_PERIOD_S + 1 && seen.total < budget,
    };
  },
};

if (import.meta.main) {
  const started = performance.now();
  const outcome = await scenario.run({
    say: (text) => console.log(`  [${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${text}`),
  });
  console.log(outcome);
}
