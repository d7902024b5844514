import assert from "node:assert/strict";
import { backoffDelay, classifyError, describeError, retry } from "../../lib/retry.ts";
import { HttpStatusError, HttpUnreachableError } from "../../lib/http.ts";
import { credentialsFromEnvironment } from "../../lib/aws.ts";
import { Faults } from "../../sim/faults.ts";
import { json, startSimServer } from "../../sim/http_server.ts";

Deno.test("full jitter stays within [0, min(cap, base * 2^attempt))", () => {
  const backoff = { baseMs: 100, capMs: 5_000 };
  assert.equal(backoffDelay(0, backoff, () => 0), 0);
  assert.equal(backoffDelay(0, backoff, () => 0.999999), 99);
  assert.equal(backoffDelay(3, backoff, () => 0.5), 400);
  assert.equal(backoffDelay(6, backoff, () => 0.999999), 4_999);
  assert.equal(backoffDelay(60, backoff, () => 0.999999), 4_999, "huge attempts stay capped");
  for (let attempt = 0; attempt < 40; attempt++) {
    const delay = backoffDelay(attempt, backoff);
    assert.ok(delay >= 0 && delay < Math.min(5_000, 100 * 2 ** attempt), `attempt ${attempt}: ${delay}`);
  }
});

Deno.test("retry retries transient errors and returns the eventual result", async () => {
  let calls = 0;
  const retried: number[] = [];
  const result = await retry(() => {
    calls++;
    if (calls < 3) throw new HttpUnreachableError("http://x", "refused");
    return Promise.resolve("ok");
  }, { backoff: { baseMs: 1, capMs: 2 }, onRetry: (_e, attempt) => retried.push(attempt) });
  assert.equal(result, "ok");
  assert.equal(calls, 3);
  assert.deepEqual(retried, [0, 1]);
});

Deno.test("retry stops at the first permanent error", async () => {
  let calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      throw new HttpStatusError("http://x", 404, "");
    }, { backoff: { baseMs: 1, capMs: 2 } }),
    HttpStatusError,
  );
  assert.equal(calls, 1);
});

Deno.test("retry gives up with the last error once the deadline would pass", async () => {
  let now = 1_000;
  let calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      now += 400;
      throw new HttpUnreachableError("http://x", "timeout");
    }, { backoff: { baseMs: 1, capMs: 1 }, deadline: 2_000, now: () => now }),
    HttpUnreachableError,
  );
  assert.equal(calls, 3);
});

Deno.test("retry ends promptly with the abort reason when the signal fires", async () => {
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort("SIGTERM"), 30);
  await assert.rejects(
    retry(() => Promise.reject(new HttpUnreachableError("http://x", "down")), {
      signal: controller.signal,
      backoff: { baseMs: 10_000, capMs: 10_000 },
      random: () => 0.99,
    }),
    (reason) => reason === "SIGTERM",
  );
  assert.ok(Date.now() - started < 2_000);
});

Deno.test("plain errors: network-like are transient, programming errors permanent", () => {
  assert.equal(classifyError(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })), "transient");
  assert.equal(classifyError(new TypeError("fetch failed")), "transient");
  assert.equal(classifyError(new TypeError("cannot read properties of undefined")), "permanent");
  assert.equal(classifyError(new HttpStatusError("u", 503, "")), "transient");
  assert.equal(classifyError(new HttpStatusError("u", 429, "")), "transient");
  assert.equal(classifyError(new HttpStatusError("u", 403, "")), "permanent");
  assert.equal(classifyError("a string"), "permanent");
});

Deno.test("describeError keeps name, message and HTTP status", () => {
  assert.deepEqual(describeError(new HttpStatusError("http://x", 500, "boom")), {
    error: "HttpStatusError",
    message: "http://x answered HTTP 500: boom",
    status: 500,
  });
  assert.equal(describeError(Object.assign(new Error("hang up"), { code: "ECONNRESET" })).error, "ECONNRESET");
});

Deno.test("credential endpoint errors from the real SDK provider: outages and 5xx are transient, 4xx permanent", async () => {
  const { fromContainerMetadata } = await import("@smithy/credential-provider-imds");
  const answers = [500, 403];
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("{}", { status: answers.shift() ?? 200 }),
  );
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (closed.addr as Deno.NetAddr).port;
  closed.close();

  const failureOf = async (url: string) => {
    Deno.env.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", url);
    try {
      await fromContainerMetadata({ timeout: 300, maxRetries: 0 })();
    } catch (error) {
      return error;
    } finally {
      Deno.env.delete("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    }
    assert.fail(`credentials from ${url} unexpectedly succeeded`);
  };
  const base = `http://127.0.0.1:${server.addr.port}/creds`;
  assert.equal(classifyError(await failureOf(base)), "transient", "HTTP 500");
  assert.equal(classifyError(await failureOf(base)), "permanent", "HTTP 403");
  assert.equal(classifyError(await failureOf(`http://127.0.0.1:${(silent.addr as Deno.NetAddr).port}/`)), "transient");
  assert.equal(classifyError(await failureOf(`http://127.0.0.1:${closedPort}/`)), "transient", "refused");
  silent.close();
  await accepting.catch(() => {});
  for (const conn of held) conn.close();
});

Deno.test("credentials from a container endpoint that trickles its answer give up within the whole-call bound, transient", async () => {
  const faults = new Faults();
  faults.trickleIntervalMs = 200; // a credentials answer of ~150 bytes: 30 s a try, and the provider tries 3 times
  faults.failNext(3, "trickle");
  await using server = await startSimServer({
    faults,
    handle: () =>
      json(200, { AccessKeyId: "AKID", SecretAccessKey: "secret", Token: "t", Expiration: "2099-01-01T00:00:00Z" }),
  });
  Deno.env.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", `${server.url}/creds`);
  try {
    const started = performance.now();
    const error = await credentialsFromEnvironment({ AWS_CONTAINER_CREDENTIALS_FULL_URI: `${server.url}/creds` })()
      .then(
        () => assert.fail("a trickled answer must not complete within the test"),
        (error) => error,
      );
    const took = performance.now() - started;
    assert.equal(classifyError(error), "transient", String(error));
    assert.ok(took < 20_000, `credentials held the call ${took} ms`);
  } finally {
    Deno.env.delete("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  }
});
