/**
 * The sentry behind a TLS-inspecting proxy, as its own process against a real private Docker engine: the
 * proxy re-signs TLS with its own CA (the only extra CA the host trusts), and once its upstream is gone it
 * answers every request with its own 503 page. That answer is not ECS's, so the host must go offline.
 * @module
 */
import assert from "node:assert/strict";
import { createTestCa } from "../../sim/region_endpoint.ts";
import { startBumpingProxy } from "../../sim/tls_bumping_proxy.ts";
import { fixtureForFile, handedBack, offlineApplied, SentryCase, standardHost, stopped, waitUntil } from "./harness.ts";

const { fixture, options } = await fixtureForFile();

Deno.test({
  ...options,
  name:
    "behind a TLS-bumping proxy: its 503 page when the region is gone takes the host offline; ECS's answer hands back",
  async fn() {
    const f = fixture!;
    await Deno.mkdir(`${f.dir}/proxy-ca`);
    const proxyCa = await createTestCa(`${f.dir}/proxy-ca`);
    await using proxy = startBumpingProxy({
      ca: proxyCa,
      upstreamCaPem: f.ca.caPem,
      routes: { [new URL(f.endpoint.url).host]: f.endpoint.port },
    });
    await f.endpoint.set("answer");
    await standardHost(f.engine, 3);
    const c = new SentryCase(f, "bumped");
    // The host trusts the proxy's CA, not the region's: this later --ca-file replaces the harness's.
    await using sentry = c.start(["--https-proxy", proxy.url, "--ca-file", proxyCa.caFile]);
    await sentry.waitForLog((e) => e.message.startsWith("[connect] ecs at eu-test-1 is available"));
    assert.ok(proxy.tunnels.length >= 1, "the probe went through the proxy");

    await f.endpoint.set("refuse");
    const unreachable = await sentry.waitForLog((e) => e.reason === "proxy-error");
    assert.match(String(unreachable.detail), /^HTTP 503 .*ERR_CONNECT_FAIL/);
    await waitUntil("the agent is paused and ECS containers are on on-failure", () => offlineApplied(f.engine));
    assert.ok(proxy.errorPages.length >= 2, "every failed probe met the proxy's own page");
    const status = await c.run(["status"]);
    assert.match(JSON.parse(status.stdout).lastProbe.reason, /^proxy-error: HTTP 503/);

    await f.endpoint.set("answer");
    await sentry.waitForLog(handedBack);
    const states = await f.engine.states();
    assert.equal(states.get("ecs-agent")?.status, "running");
    assert.equal(states.get("web")?.policy, "no");
    assert.equal(await stopped(sentry), 0);
  },
});
