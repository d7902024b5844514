/**
 * Demo: a Fargate-style awsvpc task behind an NLB is scaled in. ECS deregisters its target, the target
 * turns `draining`, and the real nlb-sidecar process (the flags of its binary) notices, waits its
 * DEREGISTRATION_WAIT and exits 0, which as an essential container makes ECS stop the task long before
 * the target group's deregistration delay would have. Timings are shortened so it runs in seconds.
 *
 * Run alone: `deno run -A demo/nlb_sidecar.ts`.
 * @module
 */
import type { Narrator, Scenario, ScenarioOutcome } from "./scenario.ts";
import { startEcsWorld } from "../sim/ecs_world.ts";
import { type LogEntry, spawnRole } from "../sim/role_process.ts";

const POLLING_FREQUENCY = 0.5;
const DEREGISTRATION_WAIT = 2;
/** The target group's own deregistration delay: what ECS would wait for without the sidecar. */
const DEREGISTRATION_DELAY_S = 300;

export const scenario: Scenario = {
  title: "nlb-sidecar: a draining Fargate task stops after its wait, not the 300 s deregistration delay",
  intro: "An awsvpc task (app + ecs-nlb-sidecar) is registered in an NLB target group. When ECS deregisters it, " +
    `the sidecar sees the target draining and exits 0 after DEREGISTRATION_WAIT=${DEREGISTRATION_WAIT} s, ` +
    `so ECS stops the task instead of waiting the group's ${DEREGISTRATION_DELAY_S} s deregistration delay.`,
  run,
};

async function run(narrator: Narrator): Promise<ScenarioOutcome> {
  await using world = await startEcsWorld({
    networkMode: "awsvpc",
    launchType: "FARGATE",
    targetGroups: [{ name: "web-nlb", protocol: "TCP", deregistrationDelayMs: DEREGISTRATION_DELAY_S * 1000 }],
  });
  const [target] = world.targets;
  narrator.say(
    `ECS runs task "${world.serviceName}" on Fargate; ECS registered its target ${target.id}:${target.port} ` +
      `in web-nlb (healthy)`,
  );
  const dir = await Deno.makeTempDir({ prefix: "nlb-sidecar-demo-" });
  await using sidecar = spawnRole("nlb-sidecar", {
    env: {
      ...world.env,
      POLLING_FREQUENCY: String(POLLING_FREQUENCY),
      DEREGISTRATION_WAIT: String(DEREGISTRATION_WAIT),
      STATUS_FILE: `${dir}/status.json`,
    },
  });
  try {
    narrator.say(
      `the sidecar starts (POLLING_FREQUENCY=${POLLING_FREQUENCY}, DEREGISTRATION_WAIT=${DEREGISTRATION_WAIT})`,
    );
    const watching = await sidecar.waitForLog((e) => e.message.startsWith("watching"));
    const found = (watching.targets as Array<{ targetGroup: string; target: string }>)[0];
    narrator.say(
      `sidecar: discovered service ${watching.serviceName} from the task metadata and ECS, ` +
        `its target ${found.target} in ${found.targetGroup}`,
    );
    const healthy = await sidecar.waitForLog((e) => e.message.includes("is healthy"));
    narrator.say(`sidecar: ${healthy.message}; one DescribeTargetHealth every ${POLLING_FREQUENCY} s`);

    await new Promise((r) => setTimeout(r, 1_500));
    narrator.say("ECS scales the service in and deregisters the task's target: ELB marks it draining");
    world.deregister();
    const drainedAt = Date.now();
    const started = await sidecar.waitForLog((e) => e.message.startsWith("drain started"));
    narrator.say(`sidecar: ${started.message} (reason ${started.reason})`);
    const finished: LogEntry = await sidecar.waitForLog((e) => e.message.startsWith("finished"));
    narrator.say(`sidecar: ${finished.message}`);
    const exit = await sidecar.exited;
    const after = (exit.at - drainedAt) / 1000;
    narrator.say(
      `the sidecar exited with code ${exit.code}: being essential, ECS now stops the task (SIGTERM to the app), ` +
        `${after.toFixed(1)} s after the drain began instead of ${DEREGISTRATION_DELAY_S} s`,
    );
    const ok = exit.code === 0 && after >= DEREGISTRATION_WAIT &&
      after < DEREGISTRATION_WAIT + 2 * POLLING_FREQUENCY + 1;
    return {
      expected: `exit 0 about ${DEREGISTRATION_WAIT} s after the target started draining`,
      observed: `exit ${exit.code} ${after.toFixed(1)} s after the target started draining (${finished.reason})`,
      ok,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const started = Date.now();
  console.log(`${scenario.title}\n${scenario.intro}\n`);
  const outcome = await scenario.run({
    say: (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${text}`),
  });
  console.log(`\nexpected: ${outcome.expected}\nobserved: ${outcome.observed}\n${outcome.ok ? "OK" : "NOT OK"}`);
  Deno.exit(outcome.ok ? 0 : 1);
}
