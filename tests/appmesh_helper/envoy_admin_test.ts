import assert from "node:assert/strict";
import { EnvoyAdmin, type IngressListener, ingressListener } from "../../lib/appmesh_helper/envoy_admin.ts";
import { HttpStatusError, HttpUnreachableError, request } from "../../lib/http.ts";
import { DownstreamConnection, unusedPort } from "../../sim/downstream.ts";
import { startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { startSimServer } from "../../sim/http_server.ts";
import { steppableWallClock } from "../../sim/wall_clock.ts";
import { until, within } from "./support.ts";

/** The ingress counters of one drain reading. */
async function ingressOf(admin: EnvoyAdmin, listener: IngressListener) {
  return (await admin.drainReading(listener)).ingress;
}

const post = (url: string) => request(url, { method: "POST", timeoutMs: 2_000 });

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
  const gauge = await request(`${envoy.adminUrl}/stats?filter=^server\\.state$`, { timeoutMs: 2_000 });
  assert.equal(gauge.body, "server.state: 0\n", "the server.state gauge is only set at the next stats flush");
  await request(`${envoy.adminUrl}/healthcheck/ok`, { method: "POST", timeoutMs: 2_000 });
  assert.deepEqual(await admin.ready(), { live: true, state: "LIVE" });
  assert.deepEqual(envoy.calls.map((c) => `${c.method} ${c.target} ${c.status}`), [
    "POST /healthcheck/fail 200",
    "GET /ready 503",
    "GET /stats?filter=%5Eserver%5C.state%24 200",
    "POST /healthcheck/ok 200",
    "GET /ready 200",
  ]);
});

Deno.test("ingressCount counts real TCP connections, open now and accepted ever, however many come and go", async () => {
  await using envoy = await startEnvoyEmulator();
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const listener = ingressListener("15000");
  assert.deepEqual(await ingressOf(admin, listener), { active: 0, accepted: 0 });
  const connections = await Promise.all([1, 2, 3].map(() => DownstreamConnection.open(envoy.ingressPort)));
  await until(() => envoy.activeIngressConnections === 3, "three connections are accepted");
  assert.deepEqual(
    await ingressOf(admin, listener),
    { active: 3, accepted: 3 },
    "the per-worker stats are not counted twice",
  );
  assert.deepEqual(await connections[0].request("/"), { status: 200, connectionClose: false });
  connections[0].close();
  connections[1].close();
  await until(() => envoy.activeIngressConnections === 1, "two connections are gone");
  assert.deepEqual(await ingressOf(admin, listener), { active: 1, accepted: 3 });

  const brief = await DownstreamConnection.open(envoy.ingressPort);
  await brief.request("/");
  brief.close();
  await until(() => envoy.activeIngressConnections === 1, "the brief connection is gone");
  assert.deepEqual(
    await ingressOf(admin, listener),
    { active: 1, accepted: 4 },
    "a connection that came and went between two reads shows in the accepted count only",
  );
  connections[2].close();
});

Deno.test("graceful inbound drain: idle keep-alives stay open, each connection closes after its next answer", async () => {
  // Immediate strategy: every answer from the drain's start closes its connection (Gradual is tested below).
  await using envoy = await startEnvoyEmulator({ drainStrategy: "Immediate" });
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const idle = await DownstreamConnection.open(envoy.ingressPort);
  const used = await DownstreamConnection.open(envoy.ingressPort);
  assert.equal((await used.request("/")).connectionClose, false);
  const busy = await DownstreamConnection.open(envoy.ingressPort);
  const slowAnswer = busy.request("/slow?ms=400");
  await until(() => envoy.activeIngressConnections === 3, "three connections are accepted");

  assert.equal(await admin.drainInboundListeners(), "OK");
  assert.equal(envoy.calls.at(-1)?.target, "/drain_listeners?graceful&inboundonly&skip_exit");
  assert.equal(envoy.draining, true);
  assert.deepEqual(await slowAnswer, { status: 200, connectionClose: true }, "a request in flight is served");
  await within(busy.ended, "the busy connection to close after its answer");
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(idle.isEnded, false, "an idle keep-alive is never closed by a drain (envoy issue 42305)");
  assert.equal(used.isEnded, false);
  assert.equal((await ingressOf(admin, ingressListener("15000")))?.active, 2);
  assert.deepEqual(await used.request("/"), { status: 200, connectionClose: true }, "closed after its next answer");
  await within(used.ended, "the used connection to close");

  const late = await DownstreamConnection.open(envoy.ingressPort);
  assert.equal((await late.request("/")).connectionClose, true, "a draining listener still accepts, then closes");
  await within(late.ended, "the late connection to close after its answer");
  assert.equal(envoy.state, "LIVE", "a drain alone does not change the server state");
  idle.close();
});

Deno.test("when the drain time ends Envoy stops the inbound listeners, unless skip_exit was sent", async () => {
  await using envoy = await startEnvoyEmulator({ drainTimeMs: 400 });
  await using skipping = await startEnvoyEmulator({ drainTimeMs: 400 });
  const listener = ingressListener("15000");
  const kept = await DownstreamConnection.open(envoy.ingressPort);
  await until(() => envoy.activeIngressConnections === 1, "the connection is accepted");
  assert.equal((await post(`${envoy.adminUrl}/drain_listeners?graceful&inboundonly`)).status, 200);
  assert.equal(await new EnvoyAdmin(skipping.adminUrl).drainInboundListeners(), "OK");
  await until(() => !envoy.accepting, "the drain time to end", 3_000);
  await assert.rejects(DownstreamConnection.open(envoy.ingressPort), /refused/i, "new connections are refused");
  assert.equal(kept.isEnded, false, "the connections it had stay open");
  const reading = await new EnvoyAdmin(envoy.adminUrl).drainReading(listener);
  assert.equal(reading.listenersStopped, 1);
  assert.deepEqual(reading.ingress, { active: 1, accepted: 1 }, "refused connections never reach the counters");

  await new Promise((r) => setTimeout(r, 300));
  assert.equal(skipping.accepting, true, "skip_exit: still accepting after the drain time");
  const late = await DownstreamConnection.open(skipping.ingressPort);
  assert.equal((await late.request("/")).status, 200);
  assert.equal((await new EnvoyAdmin(skipping.adminUrl).drainReading(listener)).listenersStopped, 0);
  kept.close();
});

Deno.test("gradual drain: the chance that an answer closes its connection grows from 0 to 1 over the drain time", async () => {
  let draw = 0.99;
  await using envoy = await startEnvoyEmulator({ drainTimeMs: 2_000, random: () => draw });
  const admin = new EnvoyAdmin(envoy.adminUrl);
  assert.equal((await admin.serverInfo()).drainTimeSeconds, 2);
  const connection = await DownstreamConnection.open(envoy.ingressPort);
  await admin.drainInboundListeners();
  assert.equal((await connection.request("/")).connectionClose, false, "a high draw keeps it, early in the drain");
  draw = 0.01;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await connection.request("/")).connectionClose, true, "a low draw closes it once time has passed");
  draw = 0.999;
  const other = await DownstreamConnection.open(envoy.ingressPort);
  await new Promise((r) => setTimeout(r, 2_000));
  assert.equal((await other.request("/")).connectionClose, true, "at the end of the drain time, always");

  await using older = await startEnvoyEmulator({ drainListeners: false });
  await assert.rejects(
    new EnvoyAdmin(older.adminUrl).drainInboundListeners(),
    (error) => error instanceof HttpStatusError && error.status === 404 && /invalid path/.test(error.body),
  );
  assert.equal(older.draining, false);
});

Deno.test("server_info: the drain time and strategy as Envoy writes them (App Mesh: 20s, Gradual)", async () => {
  await using envoy = await startEnvoyEmulator({ drainTimeMs: 20_000 });
  const info = await (await request(`${envoy.adminUrl}/server_info`, { timeoutMs: 2_000 })).body;
  const parsed = JSON.parse(info);
  assert.equal(parsed.command_line_options.drain_time, "20s");
  assert.equal(parsed.command_line_options.drain_strategy, "Gradual");
  assert.match(parsed.uptime_current_epoch, /^\d+s$/);
  assert.equal((await new EnvoyAdmin(envoy.adminUrl).serverInfo()).drainTimeSeconds, 20);
  await using defaults = await startEnvoyEmulator();
  assert.equal((await new EnvoyAdmin(defaults.adminUrl).serverInfo()).drainTimeSeconds, 600, "Envoy's default");
});

Deno.test("the admin home page is HTML for any method; a call is taken only on Envoy's own 200 OK", async () => {
  await using envoy = await startEnvoyEmulator();
  for (const method of ["GET", "POST"]) {
    const home = await request(`${envoy.adminUrl}/`, { method, timeoutMs: 2_000 });
    assert.equal(home.status, 200, method);
    assert.match(home.body, /^<!DOCTYPE html>/, method);
    assert.match(home.body, /healthcheck\/fail/);
  }
  // ENVOY_ADMIN_URL pointing at the home page's HTML (a proxy, a wrong path) answers 200 to everything.
  await using html = await startSimServer({ handle: () => ({ status: 200, body: "<!DOCTYPE html><html></html>" }) });
  await assert.rejects(
    new EnvoyAdmin(html.url).failHealthcheck(),
    (error) => error instanceof HttpStatusError && error.status === 200 && /DOCTYPE/.test(error.body),
  );
  await assert.rejects(new EnvoyAdmin(`${envoy.adminUrl}/nope`).failHealthcheck(), /HTTP 404: invalid path/);
  assert.equal(envoy.healthcheckFailed, false);
});

Deno.test("stats in JSON: text readouts as strings, counters and gauges by name, histograms last; usedonly", async () => {
  await using envoy = await startEnvoyEmulator();
  const stats = async (query: string) =>
    JSON.parse((await request(`${envoy.adminUrl}/stats?format=json${query}`, { timeoutMs: 2_000 })).body).stats;
  const all = await stats("");
  assert.equal(typeof all[0].value, "string", "text readouts come first, with string values");
  assert.ok("histograms" in all.at(-1), "the histograms entry is last");
  const names = all.slice(0, -1).filter((s: { value: unknown }) => typeof s.value === "number").map((
    s: { name: string },
  ) => s.name);
  assert.deepEqual(names, [...names].sort());
  const connection = await DownstreamConnection.open(envoy.ingressPort);
  await connection.request("/");
  connection.close();
  await until(() => envoy.activeIngressConnections === 0, "the connection is gone");
  const ingress = await stats("&filter=" + encodeURIComponent("listener\\.0\\.0\\.0\\.0_15000\\.downstream_cx"));
  assert.deepEqual(ingress.slice(0, 2), [
    { name: "listener.0.0.0.0_15000.downstream_cx_active", value: 0 },
    { name: "listener.0.0.0.0_15000.downstream_cx_total", value: 1 },
  ]);
  assert.equal(ingress.at(-1).histograms.computed_quantiles[0].name, "listener.0.0.0.0_15000.downstream_cx_length_ms");
  const used = await stats("&usedonly&filter=" + encodeURIComponent("^listener\\.0\\.0\\.0\\.0_15001\\."));
  assert.deepEqual(used, [], "the egress listener was never used");
  const lookahead = await request(`${envoy.adminUrl}/stats?format=json&filter=${encodeURIComponent("(?=x)")}`, {
    timeoutMs: 2_000,
  });
  assert.deepEqual(lookahead, { status: 400, body: "Invalid re2 regex" }, "RE2 has no lookaround");
});

Deno.test("an Envoy restart: connections dropped, LIVE again, health check passing, counters at zero", async () => {
  await using envoy = await startEnvoyEmulator({ drainTimeMs: 200 });
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const listener = ingressListener("15000");
  const connection = await DownstreamConnection.open(envoy.ingressPort);
  await admin.failHealthcheck();
  await post(`${envoy.adminUrl}/drain_listeners?graceful&inboundonly`);
  await until(() => !envoy.accepting, "the listeners to stop");
  // Envoy's uptime is in whole seconds: a start two seconds later is one no read can mistake for the first.
  await new Promise((r) => setTimeout(r, 2_100));
  const before = await admin.drainReading(listener);
  assert.equal(before.live, false);
  assert.ok(before.started.latestMs - before.started.earliestMs <= 2_000, JSON.stringify(before.started));
  assert.equal(before.listenersStopped, 1);

  await envoy.restart();
  await within(connection.ended, "the old process's connections to die");
  const { started, ...after } = await admin.drainReading(listener);
  assert.deepEqual(after, { live: true, listenersStopped: 0, ingress: { active: 0, accepted: 0 } });
  assert.ok(
    started.earliestMs > before.started.latestMs,
    `started ${JSON.stringify(started)}, before ${JSON.stringify(before.started)}`,
  );
  assert.deepEqual(await admin.ready(), { live: true, state: "LIVE" });
  assert.equal(envoy.draining, false);
  const fresh = await DownstreamConnection.open(envoy.ingressPort);
  assert.equal((await fresh.request("/")).connectionClose, false, "a new Envoy is not draining");
  fresh.close();
});

Deno.test("a wall-clock step moves Envoy's uptime, negative past its start, and not its start as the helper reads it", async () => {
  using wall = steppableWallClock();
  await using envoy = await startEnvoyEmulator();
  const admin = new EnvoyAdmin(envoy.adminUrl);
  const first = (await admin.drainReading(undefined)).started;
  let offsetSeconds = 0;
  for (const stepSeconds of [-3_600, 7_200, -3_600]) {
    wall.step(stepSeconds * 1000);
    offsetSeconds += stepSeconds;
    const { uptimeSeconds } = await admin.serverInfo();
    assert.ok(
      uptimeSeconds! >= offsetSeconds && uptimeSeconds! <= offsetSeconds + 10,
      `uptime ${uptimeSeconds} s with the clock ${offsetSeconds} s off`,
    );
    const { started } = await admin.drainReading(undefined);
    assert.ok(
      started.earliestMs <= first.latestMs && first.earliestMs <= started.latestMs,
      `${offsetSeconds} s off, Envoy started within ${JSON.stringify(started)}, first ${JSON.stringify(first)}`,
    );
  }
});

Deno.test("the admin API on a unix socket, as App Mesh's ENVOY_ADMIN_MODE=uds serves it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "envoy-uds-" });
  try {
    await using envoy = await startEnvoyEmulator({ adminSocketPath: `${dir}/envoy_admin.sock` });
    assert.equal(envoy.adminUrl, `unix://${dir}/envoy_admin.sock`);
    const admin = new EnvoyAdmin(envoy.adminUrl);
    assert.deepEqual(await admin.ready(), { live: true, state: "LIVE" });
    assert.equal(await admin.failHealthcheck(), "OK");
    assert.equal(await admin.drainInboundListeners(), "OK");
    assert.equal((await admin.drainReading(ingressListener("15000"))).live, false);
    assert.deepEqual(await admin.listenerNames(), ["0.0.0.0_15000", "0.0.0.0_15001"]);
    await envoy.close();
    await assert.rejects(
      admin.ready(),
      (error) => error instanceof HttpUnreachableError && /unix:\/\//.test(error.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
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
  assert.deepEqual(await ingressOf(admin, ingressListener("8080")), { active: 1, accepted: 1 });
  assert.deepEqual(await ingressOf(admin, ingressListener("[__]_8080")), { active: 1, accepted: 1 });
  assert.equal(await ingressOf(admin, ingressListener("15000")), undefined, "no listener on 15000");
  assert.deepEqual(
    await ingressOf(admin, ingressListener("0.0.0.0_15001")),
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
  await assert.rejects(ingressOf(admin, ingressListener("15000")), HttpUnreachableError);
  assert.equal(envoy.healthcheckFailed, false);
});
