/**
 * The sidecar's own container definition against its one job, ending the task early: the pure rules, and
 * the emulated ECS and task metadata answering as the real ones do (DescribeTaskDefinition, RestartCount).
 */
import assert from "node:assert/strict";
import { DescribeTaskDefinitionCommand, ECSClient } from "@aws-sdk/client-ecs";
import { awsClientConfig } from "../../lib/aws.ts";
import { metadataClient } from "../../lib/ecs_metadata.ts";
import { ownContainerFindings } from "../../lib/nlb_sidecar/own_container.ts";
import { startEcsWorld, WORLD } from "../../sim/ecs_world.ts";
import { pointSdkAt } from "./support.ts";

const name = "sidecar";

Deno.test("a restart policy that restarts exit 0 is an error with the fix; one that ignores 0 is fine", () => {
  const [finding, ...rest] = ownContainerFindings({
    name,
    restartCount: 0,
    definition: { restartPolicy: { enabled: true, ignoredExitCodes: [1, 137], restartAttemptPeriod: 60 } },
  });
  assert.deepEqual(rest, []);
  assert.equal(finding.level, "error");
  assert.equal(finding.check, "restart-policy");
  assert.match(finding.message, /restarts exit 0 \(ignoredExitCodes: \[1, 137\]\)/);
  assert.match(finding.fix, /add 0 to restartPolicy\.ignoredExitCodes of container sidecar/);
  // ECS ignores no exit code by default (API_ContainerRestartPolicy): a policy without the list restarts 0 too.
  assert.equal(
    ownContainerFindings({ name, restartCount: 3, definition: { restartPolicy: { enabled: true } } })[0].level,
    "error",
  );
  assert.deepEqual(
    ownContainerFindings({
      name,
      restartCount: 0,
      definition: { restartPolicy: { enabled: true, ignoredExitCodes: [0] } },
    }),
    [],
  );
  assert.deepEqual(
    ownContainerFindings({ name, restartCount: undefined, definition: { restartPolicy: { enabled: false } } }),
    [],
  );
});

Deno.test("a container not essential is a warning; essential left out is essential, as ECS takes it", () => {
  const [finding] = ownContainerFindings({ name, restartCount: undefined, definition: { essential: false } });
  assert.equal(finding.level, "warning");
  assert.equal(finding.check, "essential");
  assert.match(finding.fix, /"essential": true on container sidecar/);
  assert.deepEqual(ownContainerFindings({ name, restartCount: undefined, definition: {} }), []);
  assert.deepEqual(ownContainerFindings({ name, restartCount: undefined, definition: { essential: true } }), []);
});

Deno.test("without the task definition, RestartCount in metadata is a warning that cannot say more; no count, nothing", () => {
  const [finding, ...rest] = ownContainerFindings({ name, restartCount: 2, definition: undefined });
  assert.deepEqual(rest, []);
  assert.equal(finding.level, "warning", "its ignoredExitCodes may well include 0: not an error");
  assert.match(finding.message, /RestartCount 2/);
  assert.match(finding.fix, /allow ecs:DescribeTaskDefinition/);
  assert.deepEqual(ownContainerFindings({ name, restartCount: undefined, definition: undefined }), []);
});

Deno.test("emulated ECS: DescribeTaskDefinition by family:revision, family (latest ACTIVE) or ARN; unknown and denied as ECS answers", async () => {
  await using world = await startEcsWorld({
    networkMode: "awsvpc",
    sidecarDefinition: { essential: false, restartPolicy: { enabled: true, ignoredExitCodes: [0] } },
  });
  pointSdkAt(world);
  const ecs = new ECSClient(awsClientConfig({ region: WORLD.region, timeoutMs: 2_000 }, world.env));
  const describe = (taskDefinition: string) => ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition }));
  const arn = `arn:aws:ecs:${WORLD.region}:${WORLD.account}:task-definition/${WORLD.family}:${WORLD.revision}`;
  for (const wanted of [`${WORLD.family}:${WORLD.revision}`, WORLD.family, arn]) {
    const out = await describe(wanted);
    assert.equal(out.taskDefinition?.taskDefinitionArn, arn, wanted);
    const sidecar = out.taskDefinition?.containerDefinitions?.find((c) => c.name === "sidecar");
    assert.equal(sidecar?.essential, false);
    assert.deepEqual(sidecar?.restartPolicy, { enabled: true, ignoredExitCodes: [0] });
    const app = out.taskDefinition?.containerDefinitions?.find((c) => c.name === "app");
    assert.equal(app?.essential, undefined, "left out, as a definition registered without it may answer");
  }
  await assert.rejects(describe(`${WORLD.family}:99`), (error: Error) => error.name === "ClientException");
  world.ecs.state.denied.add("DescribeTaskDefinition");
  await assert.rejects(describe(WORLD.family), (error: Error) => error.name === "AccessDeniedException");
  ecs.destroy();
});

Deno.test("emulated task metadata: RestartCount only for a container whose restart policy is enabled, counting restarts", async () => {
  await using world = await startEcsWorld({
    networkMode: "awsvpc",
    sidecarDefinition: { restartPolicy: { enabled: true } },
  });
  const metadata = metadataClient(world.env.ECS_CONTAINER_METADATA_URI_V4);
  assert.equal((await metadata.self()).RestartCount, 0);
  world.metadata.recordRestart("sidecar");
  assert.equal((await metadata.self()).RestartCount, 1);
  const task = await metadata.task();
  assert.equal(task.Containers.find((c) => c.Name === "sidecar")?.RestartCount, 1);
  assert.ok(!("RestartCount" in task.Containers.find((c) => c.Name === "app")!), "no policy, no field");
  assert.throws(() => world.metadata.recordRestart("app"), /no restart policy/);
});
