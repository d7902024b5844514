/**
 * `deno task sim`: the emulators as a separate process, for trying a role by hand. Starts an ECS world
 * (task metadata, ECS, ELBv2, EC2) for an awsvpc task behind an NLB and an Envoy admin API, prints the
 * environment to run the sidecars with, and keeps serving until SIGINT/SIGTERM. Type a target state
 * (`draining`, `healthy`, `unused`, ...) and Enter to change the task's target.
 * @module
 */
import { startEcsWorld } from "./ecs_world.ts";
import { startEnvoyEmulator } from "./envoy_admin.ts";
import type { TargetState } from "./elbv2.ts";

const STATES: readonly TargetState[] = [
  "initial",
  "healthy",
  "unhealthy",
  "unhealthy.draining",
  "unused",
  "draining",
  "unavailable",
];

await using world = await startEcsWorld({
  networkMode: "awsvpc",
  targetGroups: [{ name: "web-nlb", protocol: "TCP" }],
});
await using envoy = await startEnvoyEmulator({ init: "INITIALIZED" });
const env = { ...world.env, ENVOY_ADMIN_URL: envoy.adminUrl };
console.log(JSON.stringify({ env, envoyIngress: envoy.ingressUrl, targets: world.targets }, null, 2));
console.log("\nRun a role against it, e.g.:");
console.log(
  `  env ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ")} POLLING_FREQUENCY=1 deno task nlb-sidecar`,
);
console.log(`\nType one of ${STATES.join(", ")} to set the target's state; Ctrl-C to stop.`);

const stop = new Promise<void>((resolve) => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, () => resolve());
});
void (async () => {
  for await (const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    const state = line.trim() as TargetState;
    if (STATES.includes(state)) {
      world.setState(state);
      console.log(`target is now ${state}`);
    } else if (state) console.log(`unknown state ${JSON.stringify(state)}`);
  }
})();
await stop;
