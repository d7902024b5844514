/** How a failed app health check is told apart: only a refusal or a timeout can mean the app is gone. */
import assert from "node:assert/strict";
import { type AppAnswer, describeAppAnswer, isServing, probeApp } from "../../lib/appmesh_helper/app_health.ts";
import { unusedPort } from "../../sim/downstream.ts";
import { startSimServer } from "../../sim/http_server.ts";

/** Long enough for any answer on a loaded 2-core machine (a first request there took 170 ms). */
const TIMEOUT_MS = 5_000;
/** For the hanging app: the timeout that must run out. */
const SILENT_TIMEOUT_MS = 300;

Deno.test("probeApp: any HTTP answer, a refusal, a timeout and other failures are told apart", async () => {
  await using app = await startSimServer({ handle: () => ({ status: 503, body: "busy\n" }) });
  const refused = await probeApp(`http://127.0.0.1:${unusedPort()}/health`, TIMEOUT_MS);
  assert.equal(refused.kind, "refused", describeAppAnswer(refused));
  assert.match(describeAppAnswer(refused), /^no answer: .*connection refused/i, "the log line says why");

  const answered = await probeApp(`${app.url}/health`, TIMEOUT_MS);
  assert.deepEqual(answered, { kind: "answered", status: 503 });
  assert.equal(isServing(answered), false, "a 5xx is an answer, but not serving");

  app.faults.failNext(1, "hang");
  const silent = await probeApp(`${app.url}/health`, SILENT_TIMEOUT_MS);
  assert.deepEqual(silent, { kind: "timed-out", reason: `no answer within ${SILENT_TIMEOUT_MS} ms` });

  app.faults.failNext(1, "reset");
  const reset = await probeApp(`${app.url}/health`, TIMEOUT_MS);
  assert.equal(reset.kind, "failed", `a reset says nothing about the app being gone: ${describeAppAnswer(reset)}`);

  const tls: AppAnswer = await probeApp(`https://127.0.0.1:${app.port}/health`, TIMEOUT_MS);
  assert.equal(tls.kind, "failed", `a TLS failure is not a refusal: ${describeAppAnswer(tls)}`);
});

Deno.test("probeApp: an abort of the caller's signal is rethrown, not taken for a silent app", async () => {
  await using app = await startSimServer({ handle: () => ({ status: 200 }) });
  app.faults.failNext(1, "hang");
  const controller = new AbortController();
  const probe = probeApp(`${app.url}/health`, 5_000, controller.signal);
  controller.abort(new Error("shutdown began"));
  await assert.rejects(probe, /shutdown began/);
});
