/**
 * Discovery through the real AWS SDK clients against the ECS, ELBv2, EC2 and task metadata emulators:
 * every network mode x target type x address family x protocol, several groups at once, the
 * permanent failures (each with its kind and a fix), and transient faults that must be ridden out.
 */
import assert from "node:assert/strict";
import type { TaskMetadata } from "../../lib/ecs_metadata.ts";
import { DiscoveryError, type DiscoveryFailure } from "../../lib/nlb_sidecar/discovery.ts";
import { startEcsWorld, WORLD, type WorldOptions } from "../../sim/ecs_world.ts";
import { Faults, seededRandom } from "../../sim/faults.ts";
import { byTaskKind, discoverIn, TARGET_CASES, targetCaseWorld } from "./support.ts";

for (const [name, cases] of byTaskKind(TARGET_CASES)) {
  Deno.test(`discovery: ${name}, NLB and ALB protocols`, async (t) => {
    for (const c of cases) {
      await t.step(c.protocol, async () => {
        await using world = await startEcsWorld(targetCaseWorld(c));
        const { plan, ec2Loads } = await discoverIn(world);
        assert.equal(plan.networkMode, c.networkMode);
        assert.deepEqual(
          plan.targets.map((planned) => ({ arn: planned.targetGroupArn, id: planned.id, port: planned.port })),
          [{ arn: world.targets[0].targetGroupArn, id: c.id, port: c.port }],
        );
        const [target] = plan.targets;
        assert.equal(target.protocol, c.protocol);
        assert.equal(target.ipAddressType, c.ipAddressType);
        const needsEc2 = c.networkMode !== "awsvpc" && c.targetType === "ip";
        assert.equal(ec2Loads, needsEc2 ? 1 : 0, "the EC2 client is loaded only for ip targets of bridge/host");
        assert.equal(world.ec2.calls.count("DescribeInstances"), needsEc2 ? 1 : 0);
        assert.equal(world.ecs.calls.count("DescribeContainerInstances"), c.networkMode === "awsvpc" ? 0 : 1);
      });
    }
  });
}

Deno.test("discovery: a bridge TCP_UDP group uses the tcp host port, a UDP group the udp one", async () => {
  await using world = await startEcsWorld({
    networkMode: "bridge",
    targetGroups: [{ protocol: "TCP_UDP", containerPort: 5000 }, { protocol: "UDP", containerPort: 5001 }],
  });
  const { plan } = await discoverIn(world);
  const mappings = world.metadata.task.Containers[0].Ports ?? [];
  const hostPort = (containerPort: number, protocol: string) =>
    mappings.find((p) => p.ContainerPort === containerPort && p.Protocol === protocol)?.HostPort;
  assert.equal(plan.targets[0].port, hostPort(5000, "tcp"));
  assert.notEqual(hostPort(5000, "tcp"), hostPort(5000, "udp"), "the world maps them apart");
  assert.equal(plan.targets[1].port, hostPort(5001, "udp"));
});

Deno.test("discovery: Fargate has no ServiceName in metadata, so the service comes from DescribeTasks", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc", launchType: "FARGATE" });
  const { plan } = await discoverIn(world);
  assert.equal(plan.serviceName, WORLD.service);
  assert.equal(world.ecs.calls.count("DescribeTasks"), 1);
  assert.equal(plan.region, WORLD.region, "region from the task ARN");
  assert.equal(plan.cluster, WORLD.cluster);
});

Deno.test("discovery: an EC2 awsvpc task with ServiceName in metadata makes no DescribeTasks call", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc", launchType: "EC2", serviceNameInMetadata: true });
  await discoverIn(world);
  assert.deepEqual(
    world.ecs.calls.records.map((r) => r.operation),
    ["DescribeServices"],
    "one ECS call; DescribeTargetGroups goes to ELB",
  );
  assert.equal(world.elbv2.calls.count("DescribeTargetGroups"), 1);
});

Deno.test("discovery: several target groups at once (NLB TCP, ALB HTTPS, NLB UDP), one DescribeTargetGroups call", async () => {
  await using world = await startEcsWorld({
    networkMode: "awsvpc",
    targetGroups: [{ protocol: "TCP" }, { protocol: "HTTPS", containerPort: 8443 }, {
      protocol: "UDP",
      containerPort: 53,
    }],
  });
  const { plan } = await discoverIn(world);
  assert.deepEqual(
    plan.targets.map((t) => [t.targetGroupArn, t.id, t.port, t.protocol]),
    world.targets.map((t, i) => [t.targetGroupArn, t.id, t.port, ["TCP", "HTTPS", "UDP"][i]]),
  );
  assert.equal(world.elbv2.calls.count("DescribeTargetGroups"), 1);
});

Deno.test("discovery: a Classic Load Balancer is skipped with its reason, the target groups are kept", async () => {
  await using world = await startEcsWorld({ networkMode: "bridge", classicLoadBalancer: true });
  const { plan } = await discoverIn(world);
  assert.equal(plan.targets.length, 1);
  assert.equal(plan.skipped.length, 1);
  assert.equal(plan.skipped[0].loadBalancerName, "classic-web");
  assert.match(plan.skipped[0].reason, /Classic Load Balancer/);
});

Deno.test("discovery: TARGET_CONTAINER_NAME picks one container's groups; unset, every container's", async () => {
  const options: WorldOptions = {
    networkMode: "awsvpc",
    extraContainers: ["admin"],
    targetGroups: [{ container: "app" }, { container: "admin", containerPort: 9000 }],
  };
  await using world = await startEcsWorld(options);
  const all = await discoverIn(world);
  assert.deepEqual(all.plan.targets.map((t) => t.container), ["app", "admin"]);
  const admin = await discoverIn(world, { targetContainerName: "admin" });
  assert.deepEqual(admin.plan.targets.map((t) => [t.container, t.port]), [["admin", 9000]]);
});

Deno.test("discovery: ECS blue/green alternate target groups are watched too", async () => {
  await using world = await startEcsWorld({
    networkMode: "awsvpc",
    targetGroups: [{ name: "blue" }, { name: "green", alternateOfPrevious: true, registered: false }],
  });
  const { plan } = await discoverIn(world);
  assert.deepEqual(plan.targets.map((t) => t.targetGroupName), ["blue", "green"]);
});

Deno.test("discovery: AWS_REGION overrides the region of the task ARN", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  const { plan } = await discoverIn(world, { region: "us-east-2" });
  assert.equal(plan.region, "us-east-2");
});

async function failure(
  options: WorldOptions,
  arrange: (world: Awaited<ReturnType<typeof startEcsWorld>>) => void,
  run: {
    targetContainerName?: string;
    timeoutMs?: number;
  } = {},
): Promise<DiscoveryError> {
  await using world = await startEcsWorld(options);
  arrange(world);
  try {
    await discoverIn(world, run);
  } catch (error) {
    assert.ok(error instanceof DiscoveryError, `expected a DiscoveryError, got ${error}`);
    assert.ok(error.fix.length > 10, "every failure says how to fix it");
    return error;
  }
  assert.fail("discovery should have failed");
}

const PERMANENT: Array<
  [
    string,
    DiscoveryFailure,
    WorldOptions,
    (world: Awaited<ReturnType<typeof startEcsWorld>>) => void,
    {
      targetContainerName?: string;
    }?,
    RegExp?,
  ]
> = [
  ["a RunTask task that is in no service", "not-in-service", { networkMode: "awsvpc", inService: false }, () => {}],
  ["a service with only a Classic Load Balancer", "no-target-group", {
    networkMode: "awsvpc",
    classicLoadBalancer: true,
  }, (w) => {
    const service = w.ecs.state.cluster(WORLD.cluster).services[0];
    w.ecs.state.cluster(WORLD.cluster).services[0] = {
      ...service,
      loadBalancers: service.loadBalancers.filter((lb) => !lb.targetGroupArn),
    };
  }],
  [
    "ecs:DescribeServices denied",
    "access-denied",
    { networkMode: "awsvpc" },
    (w) => w.ecs.state.denied.add("DescribeServices"),
    {},
    /DescribeServices/,
  ],
  [
    "ecs:DescribeTasks denied (Fargate needs it)",
    "access-denied",
    { networkMode: "awsvpc" },
    (w) => w.ecs.state.denied.add("DescribeTasks"),
  ],
  [
    "elasticloadbalancing:DescribeTargetGroups denied",
    "access-denied",
    { networkMode: "awsvpc" },
    (w) => w.elbv2.state.denied.add("DescribeTargetGroups"),
  ],
  [
    "ecs:DescribeContainerInstances denied (bridge)",
    "access-denied",
    { networkMode: "bridge" },
    (w) => w.ecs.state.denied.add("DescribeContainerInstances"),
  ],
  ["ec2:DescribeInstances denied (bridge, ip targets)", "access-denied", {
    networkMode: "bridge",
    targetGroups: [{ targetType: "ip" }],
  }, (w) => w.ec2.state.denied.add("DescribeInstances")],
  ["TARGET_CONTAINER_NAME names no container", "unknown-container", { networkMode: "awsvpc" }, () => {}, {
    targetContainerName: "web",
  }, /containers: app, sidecar/],
  ["an awsvpc task in an instance target group", "unsupported", {
    networkMode: "awsvpc",
    targetGroups: [{ targetType: "instance" }],
  }, () => {}],
  [
    "a lambda target group",
    "unsupported",
    { networkMode: "awsvpc", targetGroups: [{ targetType: "lambda" }] },
    () => {},
  ],
  ["an ipv6 target group for a task without IPv6", "unsupported", {
    networkMode: "awsvpc",
    targetGroups: [{ ipAddressType: "ipv6" }],
  }, (w) => {
    w.metadata.task = {
      ...w.metadata.task,
      Containers: w.metadata.task.Containers.map((c) => ({
        ...c,
        Networks: [{ NetworkMode: "awsvpc", IPv4Addresses: [WORLD.taskIpv4] }],
      })),
    };
  }],
  [
    "a target group deleted before start",
    "not-found",
    { networkMode: "awsvpc" },
    (w) => {
      for (const t of w.targets) w.elbv2.state.deleteTargetGroup(t.targetGroupArn);
    },
    {},
    /TargetGroupNotFound/,
  ],
  [
    "a service that does not exist",
    "not-in-service",
    { networkMode: "awsvpc", launchType: "EC2" },
    (w) => {
      w.ecs.state.cluster(WORLD.cluster).services.length = 0;
    },
    {},
    /MISSING/,
  ],
];

for (const [name, kind, options, arrange, run, message] of PERMANENT) {
  Deno.test(`discovery fails permanently, at once: ${name}`, async () => {
    const started = Date.now();
    const error = await failure(options, arrange, run);
    assert.equal(error.kind, kind, error.message);
    if (message) assert.match(error.message, message);
    assert.ok(Date.now() - started < 3_000, "a permanent failure is not retried until the timeout");
  });
}

Deno.test("discovery keeps retrying throttling past DISCOVERY_TIMEOUT and completes once AWS recovers", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  world.elbv2.faults.throttleRate = 1;
  world.ecs.faults.failNext(3, "server-error");
  const recovered = new Promise((r) => setTimeout(r, 1_000)).then(() => world.elbv2.faults.throttleRate = 0);
  const { plan, retries } = await discoverIn(world, { timeoutMs: 300 });
  await recovered;
  assert.equal(plan.targets[0].id, WORLD.taskIpv4);
  assert.ok(retries.filter((step) => step.includes("DescribeTargetGroups")).length > 3, "retried past the deadline");
});

Deno.test("discovery fails with timeout when the task is still not ready at DISCOVERY_TIMEOUT", async () => {
  const started = Date.now();
  const error = await failure({ networkMode: "bridge" }, (w) => {
    w.metadata.task = { ...w.metadata.task, Containers: w.metadata.task.Containers.map((c) => ({ ...c, Ports: [] })) };
  }, { timeoutMs: 400 });
  assert.equal(error.kind, "timeout");
  assert.match(error.message, /no host port/);
  assert.ok(Date.now() - started >= 300, "retried until the deadline");
});

Deno.test("discovery retries task metadata without fields ({}, no Containers) as not ready, never a TypeError", async (t) => {
  const incomplete: Array<[string, (task: TaskMetadata) => unknown]> = [
    ["{}", () => ({})],
    ["no Containers", ({ Containers: _, ...rest }) => rest],
    ["Containers not a list", (task) => ({ ...task, Containers: null })],
    ["a container without a Name", (task) => ({ ...task, Containers: [{ DockerId: "1" }, ...task.Containers] })],
  ];
  for (const [name, garble] of incomplete) {
    await t.step(name, async () => {
      await using world = await startEcsWorld({ networkMode: "awsvpc" });
      const complete = world.metadata.task;
      world.metadata.task = garble(complete) as TaskMetadata;
      setTimeout(() => world.metadata.task = complete, 150);
      const { plan, retries } = await discoverIn(world);
      assert.equal(plan.targets[0].id, WORLD.taskIpv4);
      assert.ok(retries.includes("task metadata"), `retried: ${retries}`);
    });
  }
  await t.step("incomplete until DISCOVERY_TIMEOUT: a timeout that names what is missing", async () => {
    const error = await failure({ networkMode: "awsvpc" }, (w) => w.metadata.task = {} as TaskMetadata, {
      timeoutMs: 300,
    });
    assert.equal(error.kind, "timeout");
    assert.match(error.message, /TaskARN/);
  });
});

Deno.test("discovery retries garbled task metadata (not JSON) as transient", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  world.metadata.faults.failNext(3, "garbled");
  const { plan } = await discoverIn(world);
  assert.equal(plan.targets[0].id, WORLD.taskIpv4);
  assert.ok(world.metadata.requestCount >= 4);
});

Deno.test("discovery waits for a bridge container whose network is still none (no dependsOn START)", async (t) => {
  const noNetwork = (task: TaskMetadata): TaskMetadata => ({
    ...task,
    Containers: task.Containers.map((c) => c.Name === "app" ? { ...c, Networks: [{ NetworkMode: "none" }] } : c),
  });
  await t.step("the network shows up: discovery completes", async () => {
    await using world = await startEcsWorld({ networkMode: "bridge" });
    const complete = world.metadata.task;
    world.metadata.task = noNetwork(complete);
    setTimeout(() => world.metadata.task = complete, 150);
    const { plan, retries } = await discoverIn(world);
    assert.equal(plan.targets[0].port, world.targets[0].port);
    assert.ok(retries.includes("task network"));
  });
  await t.step("still none at DISCOVERY_TIMEOUT: a timeout whose fix is dependsOn START", async () => {
    const error = await failure({ networkMode: "bridge" }, (w) => w.metadata.task = noNetwork(w.metadata.task), {
      timeoutMs: 300,
    });
    assert.equal(error.kind, "timeout");
    assert.match(error.fix, /dependsOn/);
  });
});

Deno.test("discovery waits for a bridge container's host port to appear in the metadata", async () => {
  await using world = await startEcsWorld({ networkMode: "bridge" });
  const complete = world.metadata.task;
  world.metadata.task = { ...complete, Containers: complete.Containers.map((c) => ({ ...c, Ports: [] })) };
  setTimeout(() => world.metadata.task = complete, 150);
  const { plan, retries } = await discoverIn(world);
  assert.equal(plan.targets[0].port, world.targets[0].port);
  assert.ok(retries.includes("task network"), "the missing port was a reason to look again");
});

Deno.test("discovery rides out 30% throttling on every API", async () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const random = seededRandom(seed);
    const throttled = () => Object.assign(new Faults(random), { throttleRate: 0.3 });
    await using world = await startEcsWorld({
      networkMode: "bridge",
      targetGroups: [{ targetType: "ip" }, { protocol: "HTTP", targetType: "instance", containerPort: 8081 }],
      faults: { ecs: throttled(), elbv2: throttled(), ec2: throttled() },
    });
    const { plan } = await discoverIn(world);
    assert.deepEqual(plan.targets.map((t) => [t.id, t.port]), world.targets.map((t) => [t.id, t.port]));
  }
});

Deno.test("discovery rides out bursts of 5xx and connection resets", async () => {
  await using world = await startEcsWorld({ networkMode: "host", targetGroups: [{ targetType: "ip" }] });
  world.ecs.faults.failNext(4, "server-error").failNext(1, "reset");
  world.elbv2.faults.failNext(5, "server-error");
  world.ec2.faults.failNext(3, "server-error");
  const { plan, retries } = await discoverIn(world);
  assert.equal(plan.targets[0].id, WORLD.instanceIpv4);
  assert.ok(retries.length >= 13, `every failure was retried (${retries.length})`);
});

Deno.test("discovery waits for a metadata endpoint that is down at start", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  world.metadata.faults.failNext(6, "reset").failNext(2, "server-error");
  const { plan } = await discoverIn(world);
  assert.equal(plan.targets[0].id, WORLD.taskIpv4);
  assert.ok(world.metadata.requestCount >= 9);
});

Deno.test("discovery stops at once when the signal aborts", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc" });
  world.metadata.faults.failNext(1_000, "hang");
  const controller = new AbortController();
  setTimeout(() => controller.abort("SIGTERM"), 100);
  const started = Date.now();
  await assert.rejects(discoverIn(world, { signal: controller.signal }), (reason) => reason === "SIGTERM");
  assert.ok(Date.now() - started < 1_000);
});

Deno.test("discovery: a trickling answer from ECS, ELB or the task metadata endpoint costs one request timeout, then a retry", async (t) => {
  for (const service of ["metadata", "ecs", "elbv2"] as const) {
    await t.step(service, async () => {
      await using world = await startEcsWorld({ networkMode: "awsvpc" });
      world[service].faults.trickleIntervalMs = 200;
      world[service].faults.failNext(1, "trickle");
      const started = Date.now();
      const { plan } = await discoverIn(world);
      const took = Date.now() - started;
      assert.equal(plan.targets[0].id, WORLD.taskIpv4);
      assert.ok(took < 15_000, `discovery was held ${took} ms by one trickled answer`);
    });
  }
});

Deno.test("discovery: CODE_DEPLOY blue/green: the target groups of the task's own task set, not the service's", async (t) => {
  for (const launchType of ["FARGATE", "EC2"] as const) {
    await t.step(launchType, async () => {
      await using world = await startEcsWorld({ networkMode: "awsvpc", launchType, codeDeploy: true });
      const service = world.ecs.state.cluster(WORLD.cluster).services[0];
      const blue = service.loadBalancers[0].targetGroupArn;
      assert.ok(blue && !world.targets.some((target) => target.targetGroupArn === blue), "the world has a blue group");
      const { plan } = await discoverIn(world);
      assert.deepEqual(plan.targets.map((target) => target.targetGroupArn), world.targets.map((t) => t.targetGroupArn));
    });
  }
  await t.step("a task set that does not show up by DISCOVERY_TIMEOUT: a timeout that names startedBy", async () => {
    const error = await failure({ networkMode: "awsvpc", codeDeploy: true }, (w) => {
      const service = w.ecs.state.cluster(WORLD.cluster).services[0];
      w.ecs.state.cluster(WORLD.cluster).services[0] = { ...service, taskSets: service.taskSets?.slice(0, 1) };
    }, { timeoutMs: 300 });
    assert.equal(error.kind, "timeout");
    assert.match(error.message, /startedBy ecs-svc\/.*task sets/);
  });
});
