import assert from "node:assert/strict";
import { clusterName, metadataClient, regionFromTaskArn, type TaskMetadata } from "../../lib/ecs_metadata.ts";
import { monotonicNow } from "../../lib/clock.ts";
import { HttpStatusError, HttpUnreachableError } from "../../lib/http.ts";
import { startTaskMetadataEmulator } from "../../sim/task_metadata.ts";

const task: TaskMetadata = {
  Cluster: "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
  TaskARN: "arn:aws:ecs:eu-west-1:123456789012:task/prod/0123456789abcdef",
  Family: "web",
  Revision: "7",
  LaunchType: "FARGATE",
  Containers: [
    {
      DockerId: "aaa",
      Name: "web",
      Networks: [{ NetworkMode: "awsvpc", IPv4Addresses: ["10.0.1.23"] }],
      Ports: [{ ContainerPort: 80, HostPort: 80, Protocol: "tcp" }],
    },
    { DockerId: "bbb", Name: "sidecar", Networks: [{ NetworkMode: "awsvpc", IPv4Addresses: ["10.0.1.23"] }] },
  ],
};

const fast = { timeoutMs: 300, backoff: { baseMs: 5, capMs: 20 } };

Deno.test("metadata client reads the task and the calling container", async () => {
  await using emulator = await startTaskMetadataEmulator({ task, selfName: "sidecar" });
  const client = metadataClient(emulator.metadataUri, fast);
  const got = await client.task();
  assert.equal(got.TaskARN, task.TaskARN);
  assert.deepEqual(got.Containers.map((c) => c.Name), ["web", "sidecar"]);
  assert.equal((await client.self()).DockerId, "bbb");
});

Deno.test("metadata client rides out a failing endpoint (5xx and resets) and logs each retry", async () => {
  await using emulator = await startTaskMetadataEmulator({ task, selfName: "sidecar" });
  emulator.faults.failNext(2, "server-error").failNext(1, "reset");
  const retries: string[] = [];
  const client = metadataClient(emulator.metadataUri, { ...fast, onRetry: (e) => retries.push((e as Error).name) });
  assert.equal((await client.task()).Family, "web");
  assert.deepEqual(retries.slice(0, 2), ["HttpStatusError", "HttpStatusError"]);
  assert.equal(retries[2], "HttpUnreachableError");
});

Deno.test("a slow endpoint times out per request and the retry then succeeds", async () => {
  await using emulator = await startTaskMetadataEmulator({ task, selfName: "sidecar" });
  emulator.faults.failNext(1, "hang");
  const retries: unknown[] = [];
  const started = Date.now();
  const client = metadataClient(emulator.metadataUri, { ...fast, onRetry: (e) => retries.push(e) });
  assert.equal((await client.task()).Family, "web");
  assert.ok(retries[0] instanceof HttpUnreachableError);
  assert.match((retries[0] as Error).message, /no answer within 300 ms/);
  assert.ok(Date.now() - started < 3_000);
});

Deno.test("latency below the timeout is just waited for", async () => {
  await using emulator = await startTaskMetadataEmulator({ task, selfName: "sidecar" });
  emulator.faults.latencyMs = 100;
  assert.equal((await metadataClient(emulator.metadataUri, fast).task()).Family, "web");
});

Deno.test("an endpoint that is down gives up at the deadline with the transport error", async () => {
  const emulator = await startTaskMetadataEmulator({ task, selfName: "sidecar" });
  const uri = emulator.metadataUri;
  await emulator.close();
  const client = metadataClient(uri, fast);
  await assert.rejects(client.task({ deadline: monotonicNow() + 200 }), HttpUnreachableError);
});

Deno.test("a 404 is permanent: no retries", async () => {
  await using emulator = await startTaskMetadataEmulator({ task, selfName: "not-in-task" });
  let retries = 0;
  const client = metadataClient(emulator.metadataUri, { ...fast, onRetry: () => retries++ });
  await assert.rejects(client.self(), (e) => e instanceof HttpStatusError && e.status === 404);
  assert.equal(retries, 0);
});

Deno.test("shutdown during retries ends the call with the signal's reason", async () => {
  await using emulator = await startTaskMetadataEmulator({ task, selfName: "sidecar" });
  emulator.faults.failNext(1000, "server-error");
  const controller = new AbortController();
  setTimeout(() => controller.abort("SIGTERM"), 100);
  await assert.rejects(
    metadataClient(emulator.metadataUri, fast).task({ signal: controller.signal }),
    (r) => r === "SIGTERM",
  );
});

Deno.test("region and cluster name come out of ARNs", () => {
  assert.equal(regionFromTaskArn(task.TaskARN), "eu-west-1");
  assert.equal(regionFromTaskArn("arn:aws-cn:ecs:cn-north-1:1:task/c/x"), "cn-north-1");
  assert.equal(regionFromTaskArn("not-an-arn"), undefined);
  assert.equal(clusterName(task.Cluster), "prod");
  assert.equal(clusterName("default"), "default");
});
