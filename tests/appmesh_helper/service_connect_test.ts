/**
 * The helper in a task that uses ECS Service Connect: it says at start what it will and will not do, and it
 * never fails or drains the managed proxy, whichever way ENVOY_ADMIN_URL reaches it.
 */
import assert from "node:assert/strict";
import { type ContainerMetadata, serviceConnectContainer, type TaskMetadata } from "../../lib/ecs_metadata.ts";
import { EnvoyAdmin } from "../../lib/appmesh_helper/envoy_admin.ts";
import { isServiceConnectProxy } from "../../lib/appmesh_helper/service_connect.ts";
import { startEnvoyEmulator } from "../../sim/envoy_admin.ts";
import { Faults } from "../../sim/faults.ts";
import { type LogEntry, spawnRole } from "../../sim/role_process.ts";
import { startTaskMetadataEmulator } from "../../sim/task_metadata.ts";
import { within } from "./support.ts";

const TASK_SET = "arn:aws:ecs:eu-west-1:123456789012:task-set/prod/web/ecs-svc/1234567890123456789";
const byStep = (step: string) => (entry: LogEntry) => entry.step === step;

function task(extra: ContainerMetadata[] = []): TaskMetadata {
  const container = (name: string, image: string): ContainerMetadata => ({
    DockerId: name,
    Name: name,
    Image: image,
    KnownStatus: "RUNNING",
  });
  return {
    Cluster: "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
    TaskARN: "arn:aws:ecs:eu-west-1:123456789012:task/prod/0123456789abcdef0123456789abcdef",
    Family: "web",
    Revision: "3",
    Containers: [
      container("app", "example/app:1"),
      container("helper", "ecs-lifecycle/appmesh-helper:0.1.0"),
      ...extra,
    ],
  };
}

/** As ECS adds it to a task of a service that uses Service Connect: not in the task definition, a random suffix. */
const serviceConnectProxy: ContainerMetadata = {
  DockerId: "sc",
  Name: "ecs-service-connect-nconQf",
  Image: "ecs-service-connect-agent:interface-v1",
  KnownStatus: "RUNNING",
};

Deno.test("the Service Connect container is found by ECS's name for it; an app's own Envoy is not it", () => {
  assert.equal(serviceConnectContainer(task([serviceConnectProxy]))?.Name, "ecs-service-connect-nconQf");
  assert.equal(serviceConnectContainer(task([{ ...serviceConnectProxy, Name: "proxy" }]))?.Name, "proxy", "its image");
  const envoy: ContainerMetadata = { DockerId: "e", Name: "envoy", Image: "envoyproxy/envoy:v1.34-latest" };
  assert.equal(serviceConnectContainer(task([envoy])), undefined);
});

Deno.test("an Envoy whose node id is an ECS task set is Service Connect's; App Mesh's and others are not", () => {
  assert.equal(isServiceConnectProxy(TASK_SET), true);
  assert.equal(
    isServiceConnectProxy(TASK_SET.replace("arn:aws:", "arn:aws-cn:").replace("eu-west-1", "cn-north-1")),
    true,
  );
  for (
    const id of [
      "arn:aws:appmesh:eu-west-1:123456789012:mesh/shop/virtualNode/web",
      "mesh/shop/virtualNode/web",
      "emulated-envoy",
      "arn:aws:ecs:eu-west-1:123456789012:task/prod/0123",
      undefined,
    ]
  ) assert.equal(isServiceConnectProxy(id), false, String(id));
});

Deno.test("/server_info's node id is read", async () => {
  await using envoy = await startEnvoyEmulator({ nodeId: TASK_SET });
  assert.equal((await new EnvoyAdmin(envoy.adminUrl).serverInfo()).nodeId, TASK_SET);
});

Deno.test("process: in a Service Connect task the helper says what it does, then drains its own Envoy as usual", async () => {
  await using metadata = await startTaskMetadataEmulator({ task: task([serviceConnectProxy]), selfName: "helper" });
  await using envoy = await startEnvoyEmulator();
  await using role = spawnRole("appmesh-helper", {
    env: {
      DRAIN_DELAY: "0.2",
      DRAIN_TIMEOUT: "0.2",
      ENVOY_ADMIN_URL: envoy.adminUrl,
      ECS_CONTAINER_METADATA_URI_V4: metadata.metadataUri,
    },
  });
  const notice = await role.waitForLog(byStep("service-connect"));
  assert.equal(notice.level, "warning");
  assert.equal(notice.container, "ecs-service-connect-nconQf");
  assert.match(notice.message, /ECS drains that proxy itself when the task stops, and the helper never calls it/);
  assert.match(notice.message, new RegExp(`only the Envoy at ENVOY_ADMIN_URL=${envoy.adminUrl}`));
  assert.match(notice.message, /If Service Connect is the task's only proxy, remove the helper/);
  await role.waitForLog(byStep("startup-complete"));
  role.kill("SIGTERM");
  assert.equal((await within(role.exited, "the helper to exit", 10_000)).code, 0);
  assert.ok(
    envoy.calls.some((c) => c.method === "POST" && c.target === "/healthcheck/fail"),
    "its own Envoy is drained",
  );
  assert.equal(role.logs.filter(byStep("service-connect")).length, 1, "said once");
});

Deno.test("process: no Service Connect container, or no metadata endpoint -> nothing said about it", async () => {
  await using metadata = await startTaskMetadataEmulator({ task: task(), selfName: "helper" });
  await using envoy = await startEnvoyEmulator();
  const environments: Record<string, string>[] = [{ ECS_CONTAINER_METADATA_URI_V4: metadata.metadataUri }, {}];
  for (const env of environments) {
    await using role = spawnRole("appmesh-helper", { env: { ENVOY_ADMIN_URL: envoy.adminUrl, ...env } });
    await role.waitForLog(byStep("startup-complete"));
    // The metadata look runs beside the startup watch: give it the time a loopback answer takes, many times over.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(role.logs.filter(byStep("service-connect")), []);
  }
});

Deno.test("process: ENVOY_ADMIN_URL reaching the Service Connect proxy -> said at start; on SIGTERM it is never called", async () => {
  await using envoy = await startEnvoyEmulator({ nodeId: TASK_SET });
  await using role = spawnRole("appmesh-helper", {
    env: { DRAIN_DELAY: "0.2", DRAIN_TIMEOUT: "5", DRAIN_MODE: "connections", ENVOY_ADMIN_URL: envoy.adminUrl },
  });
  const said = await role.waitForLog(byStep("service-connect"));
  assert.equal(said.level, "error");
  assert.equal(said.nodeId, TASK_SET);
  assert.match(said.message, /is the ECS Service Connect proxy .*will not fail its health check or drain it/);
  await role.waitForLog(byStep("startup-complete"));
  const signalledAt = Date.now();
  role.kill("SIGTERM");
  const exit = await within(role.exited, "the helper to exit", 10_000);
  assert.equal(exit.code, 0);
  assert.ok(exit.at - signalledAt < 4_000, "nothing to drain: not held to DRAIN_DELAY + DRAIN_TIMEOUT");
  assert.deepEqual(envoy.calls.filter((c) => c.method === "POST"), [], "no fail call, no drain call");
  assert.equal(envoy.state, "LIVE");
});

Deno.test("process: a proxy that answered no start-up check is still recognised at SIGTERM, before any call", async () => {
  const faults = new Faults().failNext(1_000, "server-error");
  await using envoy = await startEnvoyEmulator({ nodeId: TASK_SET, faults });
  await using role = spawnRole("appmesh-helper", {
    env: { DRAIN_DELAY: "0.2", DRAIN_TIMEOUT: "0.2", ENVOY_ADMIN_URL: envoy.adminUrl },
  });
  await role.waitForLog(byStep("envoy-startup"));
  // It answers from now on: the first answer the helper gets is the one it asks for at SIGTERM.
  faults.clear();
  role.kill("SIGTERM");
  assert.equal((await within(role.exited, "the helper to exit", 10_000)).code, 0);
  assert.equal(role.logs.find(byStep("service-connect"))?.level, "error");
  assert.deepEqual(envoy.calls.filter((c) => c.method === "POST"), []);
});
