/**
 * `make demo`: each role's real code against the loopback emulators, with fast timings, narrated as a
 * timeline; then a summary table. Exits 1 when any scenario did not behave as expected.
 * @module
 */
import type { Narrator, Scenario, ScenarioOutcome } from "./scenario.ts";
import { scenario as nlbSidecar } from "./nlb_sidecar.ts";
import { scenario as appmeshHelper } from "./appmesh_helper.ts";
import { scenario as networkSentry } from "./network_sentry.ts";

const scenarios: Scenario[] = [nlbSidecar, appmeshHelper, networkSentry];

function narrator(): Narrator {
  const started = performance.now();
  return {
    say: (text) => console.log(`  [${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${text}`),
  };
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)));
  return rows.map((row) => row.map((cell, col) => cell.padEnd(widths[col])).join("  ").trimEnd()).join("\n");
}

const results: Array<{ title: string; outcome: ScenarioOutcome; seconds: number }> = [];
for (const [index, scenario] of scenarios.entries()) {
  console.log(`\n${index + 1}. ${scenario.title}\n   ${scenario.intro}\n`);
  const started = performance.now();
  let outcome: ScenarioOutcome;
  try {
    outcome = await scenario.run(narrator());
  } catch (error) {
    outcome = { expected: "scenario completes", observed: `crashed: ${(error as Error).message}`, ok: false };
  }
  results.push({ title: scenario.title, outcome, seconds: (performance.now() - started) / 1000 });
}

console.log("\nSummary\n");
console.log(table([
  ["scenario", "expected", "observed", "time", "result"],
  ...results.map((
    r,
  ) => [r.title, r.outcome.expected, r.outcome.observed, `${r.seconds.toFixed(1)} s`, r.outcome.ok ? "ok" : "FAILED"]),
]));
const failed = results.filter((r) => !r.outcome.ok).length;
console.log(failed ? `\n${failed} scenario(s) did not behave as expected.` : "\nAll scenarios behaved as expected.");
Deno.exit(failed ? 1 : 0);
