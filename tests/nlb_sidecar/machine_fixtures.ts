/** Two target groups, one target each, and a decision machine over them, for the tests that drive it by hand. */
import { DrainMachine, type MachineOptions } from "../../lib/nlb_sidecar/machine.ts";

export const TG_A = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/a/1";
export const TG_B = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/b/2";
export const A = { targetGroupArn: TG_A, id: "10.0.1.23", port: 8080 };
export const B = { targetGroupArn: TG_B, id: "10.0.1.23", port: 9090 };
export const INTERVAL = 30_000;

/** A fixed-mode machine watching `A`, polling every {@link INTERVAL}, with jitter pinned to the middle. */
export function drainMachine(options: Partial<MachineOptions> = {}): DrainMachine {
  return new DrainMachine({
    targets: [A],
    pollIntervalMs: INTERVAL,
    deregistrationWaitMs: 120_000,
    drainMode: "fixed",
    quietPeriodMs: 5_000,
    startedAt: 0,
    random: () => 0.5,
    ...options,
  });
}
