import assert from "node:assert/strict";
import { sleep } from "../../lib/clock.ts";
import { proxyFor, regionalEndpoint } from "../../lib/network_sentry/endpoint.ts";
import { probeEndpoint, type ProbeResult, readUntil } from "../../lib/network_sentry/probe.ts";
import { createTestCa, startConnectProxy, startRegionEndpoint, type TestCa } from "../../sim/region_endpoint.ts";
import { startBumpingProxy } from "../../sim/tls_bumping_proxy.ts";
import { runRoleToEnd } from "../../sim/role_process.ts";

const REGION_HOST = "ecs.eu-test-1.amazonaws.com";
const dir = await Deno.makeTempDir({ prefix: "sentry-probe-" });
const ca: TestCa = await createTestCa(dir, [REGION_HOST]);
// The corporate proxy's own CA, the only one the host trusts besides the built-in roots behind such a proxy.
await Deno.mkdir(`${dir}/proxy-ca`);
const proxyCa: TestCa = await createTestCa(`${dir}/proxy-ca`, [REGION_HOST]);

function failed(result: ProbeResult): { reason: string; detail: string } {
  assert.equal(result.ok, false, `expected a failure, got ${JSON.stringify(result)}`);
  return result as { reason: string; detail: string };
}

Deno.test("regional endpoints follow the partition", () => {
  assert.equal(regionalEndpoint("ap-southeast-2"), "https://ecs.ap-southeast-2.amazonaws.com");
  assert.equal(regionalEndpoint("cn-north-1"), "https://ecs.cn-north-1.amazonaws.com.cn");
  assert.equal(regionalEndpoint("us-gov-west-1"), "https://ecs.us-gov-west-1.amazonaws.com");
});

Deno.test("NO_PROXY: names, suffixes, ports, IPs and *", () => {
  const target = new URL("https://ecs.eu-west-1.amazonaws.com");
  const proxy = "http://proxy:3128";
  assert.equal(proxyFor(target, undefined, undefined), undefined);
  assert.equal(proxyFor(target, proxy, undefined), proxy);
  assert.equal(proxyFor(target, proxy, ""), proxy);
  assert.equal(proxyFor(target, proxy, "*"), undefined);
  assert.equal(proxyFor(target, proxy, "amazonaws.com"), undefined);
  assert.equal(proxyFor(target, proxy, " .amazonaws.com ,other"), undefined);
  assert.equal(proxyFor(target, proxy, "*.amazonaws.com"), undefined);
  assert.equal(proxyFor(target, proxy, "ws.com"), proxy, "a suffix must end at a dot");
  assert.equal(proxyFor(target, proxy, "ecs.eu-west-1.amazonaws.com:443"), undefined);
  assert.equal(proxyFor(target, proxy, "ecs.eu-west-1.amazonaws.com:8443"), proxy);
  assert.equal(proxyFor(new URL("https://127.0.0.1:8443"), proxy, "127.0.0.1"), undefined);
  assert.equal(proxyFor(new URL("https://[::1]:8443"), proxy, "::1"), undefined);
  assert.equal(proxyFor(new URL("https://[::1]:8443"), proxy, "[::1]:8443"), undefined);
});

Deno.test("NO_PROXY: CIDR ranges match IP literal targets, as curl 7.86+ does; names are not resolved for them", () => {
  const proxy = "http://proxy:3128";
  assert.equal(proxyFor(new URL("https://10.1.2.3"), proxy, "10.0.0.0/8"), undefined);
  assert.equal(proxyFor(new URL("https://10.1.2.3"), proxy, "192.168.0.0/16, 10.1.2.0/24"), undefined);
  assert.equal(proxyFor(new URL("https://11.1.2.3"), proxy, "10.0.0.0/8"), proxy);
  assert.equal(proxyFor(new URL("https://[fd00::1]"), proxy, "fd00::/8"), undefined);
  assert.equal(proxyFor(new URL("https://[fe80::1]"), proxy, "fd00::/8"), proxy);
  assert.equal(proxyFor(new URL("https://10.1.2.3"), proxy, "fd00::/8"), proxy, "families do not mix");
  assert.equal(proxyFor(new URL("https://ecs.eu-west-1.amazonaws.com"), proxy, "0.0.0.0/0"), proxy);
});

Deno.test("probe: ECS's own answer to an unsigned ListClusters, over TLS verified with the extra CA, is reachable", async () => {
  await using endpoint = startRegionEndpoint(ca);
  const result = await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 2000, caCerts: [ca.caPem] });
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.equal((result as { status: number }).status, 400);
  assert.equal((result as { awsError?: string }).awsError, "MissingAuthenticationTokenException");
  assert.equal(endpoint.calls.count("ListClusters"), 1, "the probe asks ECS for an operation it knows");
});

Deno.test("probe: a 5xx from ECS itself, with the AWS markers, is still reachable", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("server-error");
  const result = await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 2000, caCerts: [ca.caPem] });
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.equal((result as { status: number }).status, 500);
});

Deno.test("probe: a TLS-bumping proxy relays ECS's answer while its upstream is up, and its own 503 page is proxy-error", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await using proxy = startBumpingProxy({
    ca: proxyCa,
    upstreamCaPem: ca.caPem,
    routes: { [`${REGION_HOST}:443`]: endpoint.port },
  });
  const target = { endpoint: `https://${REGION_HOST}`, timeoutMs: 3000, caCerts: [proxyCa.caPem], proxy: proxy.url };
  const up = await probeEndpoint(target);
  assert.equal(up.ok, true, JSON.stringify(up));
  assert.equal(endpoint.calls.count("ListClusters"), 1, "the answer came from the region, through the proxy");
  await endpoint.set("refuse");
  const down = failed(await probeEndpoint(target));
  assert.deepEqual(proxy.errorPages, [503], "the proxy answered with its own page");
  assert.equal(down.reason, "proxy-error");
  assert.match(down.detail, /HTTP 503/);
  assert.match(down.detail, /ERR_CONNECT_FAIL/, "what the proxy says went wrong is kept for the operator");
  await endpoint.set("tls-fail");
  const untrusted = failed(await probeEndpoint(target));
  assert.equal(untrusted.reason, "proxy-error");
  assert.match(untrusted.detail, /HTTP 503.*ERR_SECURE_CONNECT_FAIL/);
  await endpoint.set("answer");
  assert.equal((await probeEndpoint(target)).ok, true, "reachable again once the upstream is back");
});

Deno.test("probe: a TLS-bumping proxy's 504 on an upstream that never answers is proxy-error", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("blackhole");
  await using proxy = startBumpingProxy({
    ca: proxyCa,
    upstreamCaPem: ca.caPem,
    routes: { [`${REGION_HOST}:443`]: endpoint.port },
    upstreamTimeoutMs: 200,
  });
  const failure = failed(
    await probeEndpoint({
      endpoint: `https://${REGION_HOST}`,
      timeoutMs: 3000,
      caCerts: [proxyCa.caPem],
      proxy: proxy.url,
    }),
  );
  assert.equal(failure.reason, "proxy-error");
  assert.match(failure.detail, /HTTP 504/);
});

Deno.test("probe: without the CA the same endpoint fails TLS verification", async () => {
  await using endpoint = startRegionEndpoint(ca);
  const failure = failed(await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 2000 }));
  assert.equal(failure.reason, "tls");
  assert.match(failure.detail, /UnknownIssuer|certificate/i);
});

Deno.test("probe: a certificate the CA did not sign is a TLS failure", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("tls-fail");
  const failure = failed(await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 2000, caCerts: [ca.caPem] }));
  assert.equal(failure.reason, "tls");
});

Deno.test("probe: a 200 without the AWS markers (an intercepting box), left open, is proxy-error at once", async () => {
  using listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: ca.certPem, key: ca.keyPem });
  const held: Deno.Conn[] = [];
  const serving = (async () => {
    const conn = await listener.accept();
    held.push(conn);
    await readUntil(conn, "\r\n\r\n", 16384);
    // No length, no chunking, no close: only the headers can be judged.
    await conn.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\nServer: portal\r\n\r\n<html><title>Sign in"));
  })();
  const result = failed(
    await probeEndpoint({
      endpoint: `https://localhost:${(listener.addr as Deno.NetAddr).port}`,
      timeoutMs: 10_000,
      caCerts: [ca.caPem],
    }),
  );
  await serving;
  held.forEach((c) => c.close());
  assert.equal(result.reason, "proxy-error", "judged on the headers: waiting for the body would end in a timeout");
  assert.match(result.detail, /^HTTP 200 without the AWS markers .*server portal/);
});

Deno.test("probe: a connection reset during the TLS handshake is reported as reset", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("reset");
  const failure = failed(await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 2000, caCerts: [ca.caPem] }));
  assert.equal(failure.reason, "reset", failure.detail);
  assert.match(failure.detail, /\(during tls\)$/);
});

Deno.test("probe: a refused connection is reported as refused", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("refuse");
  const failure = failed(await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 2000, caCerts: [ca.caPem] }));
  assert.equal(failure.reason, "refused");
  await endpoint.set("answer");
  const again = await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 2000, caCerts: [ca.caPem] });
  assert.equal(again.ok, true, "the port listens again once the refusal ends");
});

Deno.test("probe: a blackholed endpoint fails at the timeout, not minutes later", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("blackhole");
  const started = performance.now();
  const failure = failed(await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 400, caCerts: [ca.caPem] }));
  const elapsed = performance.now() - started;
  assert.equal(failure.reason, "timeout");
  assert.match(failure.detail, /during tls/);
  assert.ok(elapsed >= 390 && elapsed < 1000, `took ${elapsed} ms`);
});

Deno.test("probe: an unresolvable host is a DNS failure", async () => {
  const failure = failed(await probeEndpoint({ endpoint: "https://ecs.no-such-region-1.invalid", timeoutMs: 3000 }));
  assert.equal(failure.reason, "dns");
});

Deno.test("probe: through an HTTP CONNECT proxy to a name only the proxy can resolve", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await using proxy = startConnectProxy({ [`${REGION_HOST}:443`]: endpoint.port });
  const withAuth = proxy.url.replace("http://", "http://sentry:s%40cret@");
  const result = await probeEndpoint({
    endpoint: `https://${REGION_HOST}`,
    timeoutMs: 2000,
    caCerts: [ca.caPem],
    proxy: withAuth,
  });
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.deepEqual(proxy.tunnels, [`${REGION_HOST}:443`]);
  assert.deepEqual(proxy.credentials, ["sentry:s@cret"]);
  const direct = failed(
    await probeEndpoint({ endpoint: `https://${REGION_HOST}`, timeoutMs: 2000, caCerts: [ca.caPem] }),
  );
  assert.equal(direct.reason, "dns", "without the proxy the name does not resolve here");
});

Deno.test("probe: a proxy that refuses the tunnel, or is down, is a proxy failure", async () => {
  await using proxy = startConnectProxy({});
  const refused = failed(
    await probeEndpoint({ endpoint: `https://${REGION_HOST}`, timeoutMs: 2000, caCerts: [ca.caPem], proxy: proxy.url }),
  );
  assert.equal(refused.reason, "proxy");
  assert.match(refused.detail, /502/);
  await proxy.close();
  const down = failed(
    await probeEndpoint({ endpoint: `https://${REGION_HOST}`, timeoutMs: 2000, caCerts: [ca.caPem], proxy: proxy.url }),
  );
  assert.equal(down.reason, "proxy");
});

Deno.test("probe: a blackhole behind the proxy still ends at the timeout", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("blackhole");
  await using proxy = startConnectProxy({ [`${REGION_HOST}:443`]: endpoint.port });
  const failure = failed(
    await probeEndpoint({ endpoint: `https://${REGION_HOST}`, timeoutMs: 400, caCerts: [ca.caPem], proxy: proxy.url }),
  );
  assert.equal(failure.reason, "timeout");
});

Deno.test("probe: a proxy that accepts and never answers is closed by the probe at the timeout", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const proxy = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  const accepted = listener.accept();
  const failure = failed(
    await probeEndpoint({ endpoint: `https://${REGION_HOST}`, timeoutMs: 300, caCerts: [ca.caPem], proxy }),
  );
  assert.equal(failure.reason, "timeout");
  assert.match(failure.detail, /during proxy/);
  using conn = await accepted;
  const buffer = new Uint8Array(4096);
  let read: number | null = 0;
  while (read !== null) {
    read = await Promise.race([
      conn.read(buffer),
      sleep(1000).then(() => Promise.reject(new Error("still open"))),
    ]);
  }
});

/**
 * A proxy port whose accept queue is full: the kernel drops new SYNs, so a connect hangs until the queue
 * has room and a retransmitted SYN (about 1 s later) gets through. Returns the fillers' local ports.
 */
async function fillAcceptQueue(port: number): Promise<{ fillers: Deno.Conn[]; ports: Set<number> }> {
  const fillers: Deno.Conn[] = [];
  for (;;) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port, signal: AbortSignal.timeout(200) }).catch(() =>
      undefined
    );
    if (conn === undefined) break;
    fillers.push(conn);
  }
  return { fillers, ports: new Set(fillers.map((c) => (c.localAddr as Deno.NetAddr).port)) };
}

Deno.test("probe: a proxy connect still pending at the timeout is abandoned, not completed later", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const { fillers, ports } = await fillAcceptQueue(port);
  const failure = failed(
    await probeEndpoint({
      endpoint: `https://${REGION_HOST}`,
      timeoutMs: 300,
      caCerts: [ca.caPem],
      proxy: `http://127.0.0.1:${port}`,
    }),
  );
  assert.equal(failure.reason, "timeout");
  assert.match(failure.detail, /during proxy/);
  // Make room: a connect the probe left running would now complete on its next SYN.
  const late: Deno.Conn[] = [];
  const draining = (async () => {
    for await (const conn of listener) {
      if (ports.has((conn.remoteAddr as Deno.NetAddr).port)) conn.close();
      else late.push(conn);
    }
  })();
  fillers.forEach((c) => c.close());
  await sleep(2000);
  late.forEach((c) => c.close());
  listener.close();
  await draining.catch(() => {});
  assert.equal(late.length, 0, "the probe's connect reached the proxy after the probe had ended");
});

Deno.test("probe: a flapping endpoint alternates answers and failures per connection", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.flap(["answer", "reset"]);
  const outcomes: boolean[] = [];
  for (let i = 0; i < 4; i++) {
    outcomes.push((await probeEndpoint({ endpoint: endpoint.url, timeoutMs: 2000, caCerts: [ca.caPem] })).ok);
  }
  assert.deepEqual(outcomes, [true, false, true, false]);
});

Deno.test("probe: shutdown during a probe rethrows the shutdown reason", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("blackhole");
  const shutdown = new AbortController();
  setTimeout(() => shutdown.abort("SIGTERM"), 100);
  await assert.rejects(
    probeEndpoint({ endpoint: endpoint.url, timeoutMs: 5000, caCerts: [ca.caPem] }, shutdown.signal),
    (reason) => reason === "SIGTERM",
  );
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

Deno.test("process: the sentry probes its region's default endpoint through HTTPS_PROXY, and NO_PROXY bypasses it", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await using proxy = startConnectProxy({ [`${REGION_HOST}:443`]: endpoint.port });
  const flags = [
    "--region=eu-test-1",
    `--ca-file=${ca.caFile}`,
    "--once",
    `--state-file=${dir}/proxied/state.json`,
    `--logfile=${dir}/proxied.log`,
    `--docker-host=unix://${dir}/no-docker.sock`,
  ];
  const proxied = await runRoleToEnd("network-sentry", { args: flags, env: { HTTPS_PROXY: proxy.url } });
  assert.equal(proxied.code, 0, proxied.stderr);
  assert.deepEqual(proxy.tunnels, [`${REGION_HOST}:443`]);
  assert.match(proxied.stdout, /"via":"via proxy 127\.0\.0\.1:\d+"/);
  assert.doesNotMatch(proxied.stdout, /unreachable/);
  const bypassed = await runRoleToEnd("network-sentry", {
    args: flags,
    env: { HTTPS_PROXY: proxy.url, NO_PROXY: ".amazonaws.com" },
  });
  assert.equal(bypassed.code, 0, bypassed.stderr);
  assert.equal(proxy.tunnels.length, 1, "NO_PROXY kept the probe off the proxy");
  assert.match(bypassed.stdout, /\[connect\] ecs at eu-test-1 unreachable \(dns\)/);
  const lowerCase = await runRoleToEnd("network-sentry", { args: flags, env: { https_proxy: proxy.url } });
  assert.equal(lowerCase.code, 0, lowerCase.stderr);
  assert.equal(proxy.tunnels.length, 2, "https_proxy is read as curl reads it");
  const lowerBypass = await runRoleToEnd("network-sentry", {
    args: flags,
    env: { https_proxy: proxy.url, no_proxy: ".amazonaws.com" },
  });
  assert.equal(lowerBypass.code, 0, lowerBypass.stderr);
  assert.equal(proxy.tunnels.length, 2, "no_proxy too");
});

Deno.test("process: HTTPS_PROXY without a scheme is an http:// proxy, as curl takes it", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await using proxy = startConnectProxy({ [`${REGION_HOST}:443`]: endpoint.port });
  const bare = proxy.url.replace("http://", "");
  const result = await runRoleToEnd("network-sentry", {
    args: [
      "--region=eu-test-1",
      `--ca-file=${ca.caFile}`,
      "--once",
      `--state-file=${dir}/bare-proxy/state.json`,
      `--logfile=${dir}/bare-proxy.log`,
      `--docker-host=unix://${dir}/no-docker.sock`,
    ],
    env: { HTTPS_PROXY: bare },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(proxy.tunnels, [`${REGION_HOST}:443`]);
  assert.match(result.stdout, /\[connect\] ecs at eu-test-1 is available/);
});

Deno.test("process: behind a TLS-bumping proxy whose upstream is gone, the log and status say proxy-error with the status", async () => {
  await using endpoint = startRegionEndpoint(ca);
  await endpoint.set("refuse");
  await using proxy = startBumpingProxy({
    ca: proxyCa,
    upstreamCaPem: ca.caPem,
    routes: { [`${REGION_HOST}:443`]: endpoint.port },
  });
  const flags = [
    "--region=eu-test-1",
    `--ca-file=${proxyCa.caFile}`,
    `--https-proxy=${proxy.url}`,
    `--state-file=${dir}/bumped/state.json`,
    `--logfile=${dir}/bumped.log`,
    `--docker-host=unix://${dir}/no-docker.sock`,
  ];
  const probed = await runRoleToEnd("network-sentry", { args: [...flags, "--once"] });
  assert.equal(probed.code, 0, probed.stderr);
  assert.match(probed.stdout, /\[connect\] ecs at eu-test-1 unreachable \(proxy-error\): HTTP 503/);
  const status = await runRoleToEnd("network-sentry", { args: ["status", ...flags] });
  assert.equal(status.code, 0, status.stderr);
  const lastProbe = JSON.parse(status.stdout).lastProbe;
  assert.equal(lastProbe.reachable, false);
  assert.match(lastProbe.reason, /^proxy-error: HTTP 503/);
});

Deno.test("process: an unreadable --ca-file is a configuration error of the daemon only", async () => {
  const flags = [
    "--region=eu-test-1",
    `--ca-file=${dir}/missing-ca.pem`,
    `--state-file=${dir}/missing-ca/state.json`,
    `--logfile=${dir}/missing-ca.log`,
    `--docker-host=unix://${dir}/no-docker.sock`,
  ];
  const daemon = await runRoleToEnd("network-sentry", { args: [...flags, "--once"] });
  assert.equal(daemon.code, 2, daemon.stdout + daemon.stderr);
  assert.match(daemon.stderr, /configuration error: --ca-file=".*missing-ca\.pem"/);
  await Deno.writeTextFile(`${dir}/not-a-ca.pem`, "hello\n");
  const notPem = await runRoleToEnd("network-sentry", {
    args: [...flags.slice(0, 1), `--ca-file=${dir}/not-a-ca.pem`, ...flags.slice(2), "--once"],
  });
  assert.equal(notPem.code, 2, notPem.stdout + notPem.stderr);
  assert.match(notPem.stderr, /--ca-file=.*holds no PEM certificate/);
  const status = await runRoleToEnd("network-sentry", { args: ["status", ...flags] });
  assert.equal(status.code, 0, "status does not probe, so it does not read the CA file");
});
