import assert from "node:assert/strict";
import { HttpUnreachableError, request } from "../../lib/http.ts";

async function unreachable(url: string, timeoutMs = 1_000): Promise<HttpUnreachableError> {
  try {
    await request(url, { timeoutMs });
  } catch (error) {
    assert.ok(error instanceof HttpUnreachableError, `expected HttpUnreachableError, got ${error}`);
    return error;
  }
  assert.fail(`${url} answered`);
}

Deno.test("transport failures say how they failed, in the operating system's words", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const refused = await unreachable(`http://127.0.0.1:${closedPort}/`);
  assert.equal(refused.kind, "refused");
  assert.match(refused.reason, /connection refused/i, "the innermost cause, not fetch's generic words");

  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const hanging = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  const timedOut = await unreachable(`http://127.0.0.1:${(silent.addr as Deno.NetAddr).port}/`, 200);
  assert.equal(timedOut.kind, "timeout");
  assert.match(timedOut.message, /no answer within 200 ms/);
  silent.close();
  await hanging.catch(() => {});
  for (const conn of held) conn.close();

  const resetting = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const resets = (async () => {
    for await (const conn of resetting) conn.close();
  })();
  const reset = await unreachable(`http://127.0.0.1:${(resetting.addr as Deno.NetAddr).port}/`);
  assert.equal(reset.kind, "other");
  assert.doesNotMatch(reset.reason, /^fetch failed$/);
  resetting.close();
  await resets.catch(() => {});
});
