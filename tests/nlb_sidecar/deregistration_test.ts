/**
 * Deregistration as ELB does it, per load balancer type (the emulator, with its NLB propagation scaled
 * down), and the sidecar's reading of the groups' deregistration delay through the real SDK client.
 */
import assert from "node:assert/strict";
import { longestDeregistrationDelay } from "../../lib/nlb_sidecar/deregistration_delay.ts";
import { Elbv2State } from "../../sim/elbv2.ts";
import { startEcsWorld } from "../../sim/ecs_world.ts";
import { discoverIn } from "./support.ts";

const FAST_RETRY = { backoff: { baseMs: 5, capMs: 20 } };

function group(state: Elbv2State, protocol: string, deregistrationDelayMs: number) {
  const arn = state.createTargetGroup({
    name: protocol.toLowerCase(),
    protocol,
    port: 80,
    targetType: "ip",
    deregistrationDelayMs,
  });
  state.register(arn, "10.0.1.23", 80);
  return arn;
}

Deno.test("emulated NLB: new flows and draining go on for the propagation time, even past a shorter delay", () => {
  const state = new Elbv2State("eu-west-1", "123456789012", { nlbPropagationMs: 120_000 });
  const arn = group(state, "TCP", 5_000);
  state.deregister(arn, "10.0.1.23", 80, 0);
  assert.equal(state.routesNewFlows(arn, "10.0.1.23", 80, 119_999), true, "still sent new flows");
  assert.equal(state.routesNewFlows(arn, "10.0.1.23", 80, 120_000), false);
  assert.equal(state.healthOf(arn, "10.0.1.23", 80, 60_000).State, "draining", "the 5 s delay is long over");
  assert.equal(state.healthOf(arn, "10.0.1.23", 80, 120_000).State, "unused");
});

Deno.test("emulated NLB: a delay longer than the propagation keeps the target draining, without new flows", () => {
  const state = new Elbv2State("eu-west-1", "123456789012", { nlbPropagationMs: 120_000 });
  const arn = group(state, "TLS", 300_000);
  state.deregister(arn, "10.0.1.23", 80, 0);
  assert.equal(state.routesNewFlows(arn, "10.0.1.23", 80, 150_000), false);
  assert.equal(state.healthOf(arn, "10.0.1.23", 80, 299_999).State, "draining");
  assert.equal(state.healthOf(arn, "10.0.1.23", 80, 300_000).State, "unused");
});

Deno.test("emulated NLB: the propagation defaults to the measured two minutes", () => {
  const state = new Elbv2State();
  const arn = group(state, "TCP", 0);
  state.deregister(arn, "10.0.1.23", 80, 0);
  assert.equal(state.routesNewFlows(arn, "10.0.1.23", 80, 119_000), true);
  assert.equal(state.healthOf(arn, "10.0.1.23", 80, 119_000).State, "draining");
});

Deno.test("emulated ALB: no open flow -> unused at once; an open flow -> draining for the delay, no new flows", () => {
  const state = new Elbv2State();
  const idle = group(state, "HTTP", 300_000);
  state.deregister(idle, "10.0.1.23", 80, 0);
  assert.equal(state.healthOf(idle, "10.0.1.23", 80, 0).State, "unused");
  const busy = group(state, "HTTPS", 30_000);
  state.countFlow(busy, "10.0.1.23", 80, 1);
  state.deregister(busy, "10.0.1.23", 80, 0);
  assert.equal(state.routesNewFlows(busy, "10.0.1.23", 80, 1), false, "an ALB stops routing at once");
  assert.equal(state.healthOf(busy, "10.0.1.23", 80, 29_999).State, "draining");
  assert.equal(state.healthOf(busy, "10.0.1.23", 80, 30_000).State, "unused");
});

Deno.test("longestDeregistrationDelay: the longest of the task's groups, read through the SDK", async () => {
  await using world = await startEcsWorld({
    networkMode: "awsvpc",
    targetGroups: [{ deregistrationDelayMs: 30_000 }, { protocol: "HTTP", containerPort: 8081 }],
  });
  const { plan, clients } = await discoverIn(world);
  const arns = plan.targets.map((t) => t.targetGroupArn);
  assert.deepEqual(await longestDeregistrationDelay(clients.elbv2, arns, FAST_RETRY), { kind: "read", seconds: 300 });
  assert.deepEqual(await longestDeregistrationDelay(clients.elbv2, arns.slice(0, 1), FAST_RETRY), {
    kind: "read",
    seconds: 30,
  });
});

Deno.test("longestDeregistrationDelay: transient errors are retried; access denied is unreadable, not thrown", async () => {
  await using world = await startEcsWorld({ networkMode: "awsvpc", targetGroups: [{ deregistrationDelayMs: 45_000 }] });
  const { plan, clients } = await discoverIn(world);
  const arns = plan.targets.map((t) => t.targetGroupArn);
  world.elbv2.faults.failNext(2, "throttle");
  assert.deepEqual(await longestDeregistrationDelay(clients.elbv2, arns, FAST_RETRY), { kind: "read", seconds: 45 });
  world.elbv2.state.denied.add("DescribeTargetGroupAttributes");
  const denied = await longestDeregistrationDelay(clients.elbv2, arns, FAST_RETRY);
  assert.equal(denied.kind, "unreadable");
  assert.equal(denied.kind === "unreadable" && denied.error, "AccessDenied");
  assert.equal(world.elbv2.calls.count("DescribeTargetGroupAttributes"), 4, "2 throttled + 1 read + 1 denied");
});
