/**
 * The emulator framing, proved with the real AWS SDK clients pointed at it through the SDK's standard
 * AWS_ENDPOINT_URL_<SERVICE> variables; and the error classifier fed with the SDK's own error objects.
 */
import assert from "node:assert/strict";
import { DescribeClustersCommand, ECSClient } from "@aws-sdk/client-ecs";
import { DescribeTargetGroupsCommand, ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { DescribeInstancesCommand, EC2Client } from "@aws-sdk/client-ec2";
import { awsClientConfig } from "../../lib/aws.ts";
import { classifyError } from "../../lib/retry.ts";
import {
  AwsError,
  awsJsonService,
  awsQueryService,
  EC2_PROTOCOL,
  ECS_PROTOCOL,
  ELBV2_PROTOCOL,
  queryList,
} from "../../sim/aws_protocols.ts";
import { type SimServer, startSimServer } from "../../sim/http_server.ts";

const credentials = { AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "secret" };

async function ecsEmulator() {
  const framing = awsJsonService({
    ...ECS_PROTOCOL,
    operations: {
      DescribeClusters: (input) => {
        const names = (input.clusters as string[] | undefined) ?? ["default"];
        if (names.includes("forbidden")) throw new AwsError("AccessDeniedException", "not authorized");
        if (names.includes("bad")) throw new AwsError("InvalidParameterException", "bad cluster");
        return { clusters: names.map((n) => ({ clusterName: n, status: "ACTIVE" })), failures: [] };
      },
    },
  });
  const server = await startSimServer(framing);
  Deno.env.set("AWS_ENDPOINT_URL_ECS", server.url);
  return {
    server,
    calls: framing.calls,
    client: new ECSClient(awsClientConfig({ region: "eu-west-1", timeoutMs: 500 }, credentials)),
  };
}

async function elbEmulator() {
  const framing = awsQueryService({
    ...ELBV2_PROTOCOL,
    operations: {
      DescribeTargetGroups: (params) => {
        const arns = queryList(params, "TargetGroupArns") as string[];
        if (arns.includes("missing")) throw new AwsError("TargetGroupNotFound", "One or more target groups not found");
        return {
          TargetGroups: arns.map((arn) => ({ TargetGroupArn: arn, Protocol: "TCP", Port: 80, TargetType: "ip" })),
        };
      },
    },
  });
  const server = await startSimServer(framing);
  Deno.env.set("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", server.url);
  return {
    server,
    client: new ElasticLoadBalancingV2Client(awsClientConfig({ region: "eu-west-1", timeoutMs: 500 }, credentials)),
  };
}

async function ec2Emulator() {
  const framing = awsQueryService({
    ...EC2_PROTOCOL,
    operations: {
      DescribeInstances: (params) => {
        const ids = queryList(params, "InstanceId") as string[];
        if (ids.includes("i-denied")) throw new AwsError("UnauthorizedOperation", "You are not authorized");
        return {
          reservationSet: [{
            reservationId: "r-1",
            instancesSet: ids.map((id) => ({ instanceId: id, privateIpAddress: "10.0.0.5" })),
          }],
        };
      },
    },
  });
  const server = await startSimServer(framing);
  Deno.env.set("AWS_ENDPOINT_URL_EC2", server.url);
  return { server, client: new EC2Client(awsClientConfig({ region: "eu-west-1", timeoutMs: 500 }, credentials)) };
}

async function sdkError(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  assert.fail("expected the SDK call to fail");
}

async function using<T extends { server: SimServer }>(emulator: Promise<T>, body: (e: T) => Promise<void>) {
  const e = await emulator;
  try {
    await body(e);
  } finally {
    await e.server.close();
  }
}

Deno.test("ECS JSON 1.1: the real client round-trips and sends one signed call", () =>
  using(ecsEmulator(), async ({ client, calls }) => {
    const out = await client.send(new DescribeClustersCommand({ clusters: ["prod"] }));
    assert.equal(out.clusters?.[0].clusterName, "prod");
    assert.equal(calls.count("DescribeClusters"), 1);
  }));

Deno.test("ECS JSON 1.1: errors arrive as the SDK's typed exceptions and classify correctly", () =>
  using(ecsEmulator(), async ({ client, server, calls }) => {
    const denied = await sdkError(client.send(new DescribeClustersCommand({ clusters: ["forbidden"] })));
    assert.equal((denied as Error).name, "AccessDeniedException");
    assert.equal(classifyError(denied), "permanent");
    const invalid = await sdkError(client.send(new DescribeClustersCommand({ clusters: ["bad"] })));
    assert.equal((invalid as Error).name, "InvalidParameterException");
    assert.equal(classifyError(invalid), "permanent");

    server.faults.failNext(1, "throttle").failNext(1, "server-error").failNext(1, "reset").failNext(1, "hang");
    const throttled = await sdkError(client.send(new DescribeClustersCommand({})));
    assert.equal((throttled as Error).name, "ThrottlingException");
    assert.equal(classifyError(throttled), "transient");
    const serverError = await sdkError(client.send(new DescribeClustersCommand({})));
    assert.equal((serverError as { $metadata: { httpStatusCode: number } }).$metadata.httpStatusCode, 500);
    assert.equal(classifyError(serverError), "transient");
    const reset = await sdkError(client.send(new DescribeClustersCommand({})));
    assert.equal(classifyError(reset), "transient", `reset: ${reset}`);
    const hung = await sdkError(client.send(new DescribeClustersCommand({})));
    assert.equal(classifyError(hung), "transient", `hang: ${hung}`);
    assert.equal(calls.count("DescribeClusters"), 4, "one attempt per answered call: SDK retries are off");
  }));

Deno.test("ELBv2 query protocol: results, list members and errors parse in the real client", () =>
  using(elbEmulator(), async ({ client, server }) => {
    const out = await client.send(new DescribeTargetGroupsCommand({ TargetGroupArns: ["tg-a", "tg-b"] }));
    assert.deepEqual(out.TargetGroups?.map((g) => g.TargetGroupArn), ["tg-a", "tg-b"]);
    assert.equal(out.TargetGroups?.[0].TargetType, "ip");
    const missing = await sdkError(client.send(new DescribeTargetGroupsCommand({ TargetGroupArns: ["missing"] })));
    assert.equal((missing as Error).name, "TargetGroupNotFoundException");
    assert.equal(classifyError(missing), "permanent");
    server.faults.failNext(1, "throttle");
    const throttled = await sdkError(client.send(new DescribeTargetGroupsCommand({ TargetGroupArns: ["tg-a"] })));
    assert.equal((throttled as Error).name, "Throttling");
    assert.equal(classifyError(throttled), "transient");
  }));

Deno.test("EC2 query protocol: item lists and the EC2 error envelope parse in the real client", () =>
  using(ec2Emulator(), async ({ client, server }) => {
    const out = await client.send(new DescribeInstancesCommand({ InstanceIds: ["i-0abc"] }));
    assert.equal(out.Reservations?.[0].Instances?.[0].PrivateIpAddress, "10.0.0.5");
    const denied = await sdkError(client.send(new DescribeInstancesCommand({ InstanceIds: ["i-denied"] })));
    assert.equal((denied as Error).name, "UnauthorizedOperation");
    assert.equal(classifyError(denied), "permanent");
    server.faults.failNext(1, "throttle");
    const throttled = await sdkError(client.send(new DescribeInstancesCommand({ InstanceIds: ["i-0abc"] })));
    assert.equal((throttled as Error).name, "RequestLimitExceeded");
    assert.equal(classifyError(throttled), "transient");
  }));

Deno.test("unsigned requests are refused like AWS refuses them", async () => {
  const framing = awsJsonService({
    targetPrefix: "Svc",
    throttleCode: "ThrottlingException",
    operations: { Op: () => ({}) },
  });
  await using server = await startSimServer(framing);
  const answer = await fetch(server.url, {
    method: "POST",
    headers: { "x-amz-target": "Svc.Op", "content-type": "application/x-amz-json-1.1" },
    body: "{}",
  });
  assert.equal(answer.status, 400);
  assert.equal((await answer.json()).__type, "MissingAuthenticationTokenException");
});
