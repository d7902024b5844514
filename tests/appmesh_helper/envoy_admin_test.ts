import assert from "node:assert/strict";
import { EnvoyAdmin, ingressListener } from "../../lib/appmesh_helper/envoy_admin.ts";
import { HttpStatusError, HttpUnreachableError, request } from "../../lib/http.ts";
import { DownstreamConnection, unusedPort } from "../../sim/downstream.ts";
import { startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { until, within } from "./support.ts";

Deno.test("ready and server_info report each of Envoy's four states", async () => {
  await using envoy = await startEnvoyEmulator({ init: "PRE_INITIALIZING" });
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const seen: Array<[string, boolean, string]> = [];
  for (const init of ["PRE_INITIALIZING", "INITIALIZING", "INITIALIZED"] as const) {
    envoy.init = init;
    const ready = await admin.ready();
    seen.push([ready.state, ready.live, (await admin.serverInfo()).state]);
  }
  envoy.healthcheckFailed = true;
  const ready = await admin.ready();
  seen.push([ready.state, ready.live, (await admin.serverInfo()).state]);
  assert.deepEqual(seen, [
    ["PRE_INITIALIZING", false, "PRE_INITIALIZING"],
    ["INITIALIZING", false, "INITIALIZING"],
    ["LIVE", true, "LIVE"],
    ["DRAINING", false, "DRAINING"],
  ]);
  assert.match((await admin.serverInfo()).version ?? "", /^[0-9a-f]{40}\/\d+\.\d+\.\d+\//);
});

Deno.test("the emulator answers like Envoy: 503 with the state, 405 for GET on POST endpoints, 404 help", async () => {
  await using envoy = await startEnvoyEmulator({ init: "INITIALIZING" });
  assert.deepEqual(await request(`${envoy.adminUrl}/ready`, { timeoutMs: 2_000 }), {
    status: 503,
    body: "INITIALIZING\n",
  });
  assert.deepEqual(await request(`${envoy.adminUrl}/healthcheck/fail`, { timeoutMs: 2_000 }), {
    status: 405,
    body: "Method GET not allowed, POST required.",
  });
  assert.equal(envoy.healthcheckFailed, false, "a refused GET changes nothing");
  const unknown = await request(`${envoy.adminUrl}/nope`, { timeoutMs: 2_000 });
  assert.equal(unknown.status, 404);
  assert.match(unknown.body, /^invalid path\. admin commands are:\n.*\/healthcheck\/fail \(POST\)/s);
  const badSkip = await request(`${envoy.adminUrl}/drain_listeners?skip_exit`, { method: "POST", timeoutMs: 2_000 });
  assert.deepEqual(badSkip, { status: 400, body: "skip_exit requires graceful\n" });
  const badRegex = await request(`${envoy.adminUrl}/stats?format=json&filter=(`, { timeoutMs: 2_000 });
  assert.deepEqual(badRegex, { status: 400, body: "Invalid re2 regex" });
});

Deno.test("failHealthcheck makes Envoy DRAINING; /healthcheck/ok undoes it", async () => {
  await using envoy = await startEnvoyEmulator();
  const admin = new EnvoyAdmin(envoy.adminUrl);
  assert.equal(await admin.failHealthcheck(), "OK");
  assert.equal(envoy.state, "DRAINING");
  assert.deepEqual(await admin.ready(), { live: false, state: "DRAINING" });
  await request(`${envoy.adminUrl}/healthcheck/ok`, { method: "POST", timeoutMs: 2_000 });
  assert.deepEqual(await admin.ready(), { live: true, state: "LIVE" });
  assert.deepEqual(envoy.calls.map((c) => `${c.method} ${c.target} ${c.status}`), [
    "POST /healthcheck/fail 200",
    "GET /ready 503",
    "POST /healthcheck/ok 200",
    "GET /ready 200",
  ]);
});

Deno.test("ingressCount counts real TCP connections, open now and accepted ever, however many come and go", async () => {
  await using envoy = await startEnvoyEmulator();
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const listener = ingressListener("15000");
  assert.deepEqual(await admin.ingressCount(listener), { active: 0, accepted: 0 });
  const connections = await Promise.all([1, 2, 3].map(() => DownstreamConnection.open(envoy.ingressPort)));
  await until(() => envoy.activeIngressConnections === 3, "three connections are accepted");
  assert.deepEqual(
    await admin.ingressCount(listener),
    { active: 3, accepted: 3 },
    "the per-worker stats are not counted twice",
  );
  assert.deepEqual(await connections[0].request("/"), { status: 200, connectionClose: false });
  connections[0].close();
  connections[1].close();
  await until(() => envoy.activeIngressConnections === 1, "two connections are gone");
  assert.deepEqual(await admin.ingressCount(listener), { active: 1, accepted: 3 });

  const brief = await DownstreamConnection.open(envoy.ingressPort);
  await brief.request("/");
  brief.close();
  await until(() => envoy.activeIngressConnections === 1, "the brief connection is gone");
  assert.deepEqual(
    await admin.ingressCount(listener),
    { active: 1, accepted: 4 },
    "a connection that came and went between two reads shows in the accepted count only",
  );
  connections[2].close();
});

Deno.test("graceful inbound drain closes idle keep-alive connections and closes busy ones after their answer", async () => {
  await using envoy = await startEnvoyEmulator();
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const idle = await DownstreamConnection.open(envoy.ingressPort);
  const used = await DownstreamConnection.open(envoy.ingressPort);
  assert.equal((await used.request("/")).connectionClose, false);
  const busy = await DownstreamConnection.open(envoy.ingressPort);
  const slowAnswer = busy.request("/slow?ms=400");
  await until(() => envoy.activeIngressConnections === 3, "three connections are accepted");
  await new Promise((r) => setTimeout(r, 50));

  assert.equal(await admin.drainInboundListeners(), "OK");
  assert.equal(envoy.calls.at(-1)?.target, "/drain_listeners?graceful&inboundonly");
  assert.equal(envoy.draining, true);
  await within(Promise.all([idle.ended, used.ended]), "the drain to close the idle connections");
  assert.equal(busy.isEnded, false, "a request in flight is served to its end");
  assert.deepEqual(await slowAnswer, { status: 200, connectionClose: true });
  await within(busy.ended, "the busy connection to close after its answer");
  await until(() => envoy.activeIngressConnections === 0, "every connection is closed");
  assert.equal((await admin.ingressCount(ingressListener("15000")))?.active, 0);

  const late = await DownstreamConnection.open(envoy.ingressPort);
  assert.equal((await late.request("/")).connectionClose, true, "a draining listener still accepts, then closes");
  await within(late.ended, "the late connection to close after its answer");
});

Deno.test("a gradual drain spreads the idle closes over drainTimeMs; an Envoy without /drain_listeners says 404", async () => {
  await using envoy = await startEnvoyEmulator({ drainTimeMs: 600 });
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const idle = await Promise.all([1, 2, 3].map(() => DownstreamConnection.open(envoy.ingressPort)));
  await until(() => envoy.activeIngressConnections === 3, "three connections are accepted");
  const drainedAt = Date.now();
  await admin.drainInboundListeners();
  const endedAfter = (await within(Promise.all(idle.map((c) => c.ended)), "the drain to close them", 3_000))
    .map((at) => at - drainedAt).sort((a, b) => a - b);
  assert.ok(endedAfter[0] >= 150, `the first close comes after a third of the drain time: ${endedAfter}`);
  assert.ok(endedAfter[2] >= 550 && endedAfter[2] < 1_500, `the last close at the drain time: ${endedAfter}`);
  assert.ok(endedAfter[2] - endedAfter[0] >= 300, `the closes are spread out: ${endedAfter}`);
  assert.deepEqual((await admin.serverInfo()).state, "LIVE");

  await using older = await startEnvoyEmulator({ drainListeners: false });
  await assert.rejects(
    new EnvoyAdmin(older.adminUrl).drainInboundListeners(),
    (error) => error instanceof HttpStatusError && error.status === 404 && /invalid path/.test(error.body),
  );
  assert.equal(older.draining, false);
});

Deno.test("after the health check fails, answers carry Connection: close but idle connections stay", async () => {
  await using envoy = await startEnvoyEmulator();
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const idle = await DownstreamConnection.open(envoy.ingressPort);
  const active = await DownstreamConnection.open(envoy.ingressPort);
  await admin.failHealthcheck();
  assert.equal((await active.request("/")).connectionClose, true);
  await within(active.ended, "the connection to close after its answer");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(idle.isEnded, false);
  assert.equal(envoy.activeIngressConnections, 1);
  idle.close();
});

Deno.test("ingressListener: a port matches the two counters of IPv4 and IPv6 listeners on it, nothing else", () => {
  const byPort = ingressListener("15000");
  for (const address of ["0.0.0.0_15000", "[__]_15000"]) {
    for (const counter of ["downstream_cx_active", "downstream_cx_total"]) {
      assert.equal(byPort.counterOf(`listener.${address}.${counter}`), counter, address);
    }
  }
  for (
    const name of [
      "listener.0.0.0.0_15000.worker_0.downstream_cx_active",
      "listener.0.0.0.0_15000.worker_0.downstream_cx_total",
      "listener.0.0.0.0_15001.downstream_cx_active",
      "listener.0.0.0.0_150000.downstream_cx_active",
      "listener.admin.downstream_cx_active",
      "http.ingress.downstream_cx_active",
      "listener.0.0.0.0_15000.downstream_cx_destroy",
      "listener.0.0.0.0_15000.downstream_cx_total_extra",
    ]
  ) {
    assert.equal(byPort.counterOf(name), undefined, name);
  }
  const byName = ingressListener("ingress.http");
  assert.equal(byName.counterOf("listener.ingress.http.downstream_cx_active"), "downstream_cx_active");
  assert.equal(byName.counterOf("listener.ingressXhttp.downstream_cx_active"), undefined, "dots are literal");
});

Deno.test("ingressCount sums addresses of one port and tells a missing listener apart", async () => {
  await using envoy = await startEnvoyEmulator({ ingressStatAddress: "[__]_8080" });
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const connection = await DownstreamConnection.open(envoy.ingressPort);
  await until(() => envoy.activeIngressConnections === 1, "the connection is accepted");
  assert.deepEqual(await admin.ingressCount(ingressListener("8080")), { active: 1, accepted: 1 });
  assert.deepEqual(await admin.ingressCount(ingressListener("[__]_8080")), { active: 1, accepted: 1 });
  assert.equal(await admin.ingressCount(ingressListener("15000")), undefined, "no listener on 15000");
  assert.deepEqual(
    await admin.ingressCount(ingressListener("0.0.0.0_15001")),
    { active: 0, accepted: 0 },
    "the egress listener exists",
  );
  connection.close();
});

Deno.test("admin failures surface as typed errors: down, faulted, not Envoy", async () => {
  const down = new EnvoyAdmin(`http://127.0.0.1:${unusedPort()}`, 500);
  await assert.rejects(down.ready(), HttpUnreachableError);
  await assert.rejects(down.failHealthcheck(), HttpUnreachableError);

  await using envoy = await startEnvoyEmulator();
  const admin = new EnvoyAdmin(envoy.adminUrl, 300);
  envoy.admin.faults.failNext(1, "server-error").failNext(1, "hang").failNext(1, "reset");
  await assert.rejects(admin.failHealthcheck(), (error) => error instanceof HttpStatusError && error.status === 500);
  await assert.rejects(admin.ready(), /no answer within 300 ms/);
  await assert.rejects(admin.ingressCount(ingressListener("15000")), HttpUnreachableError);
  assert.equal(envoy.healthcheckFailed, false);
});
