/**
 * The role bundles (tools/bundle.ts) that every process test, benchmark, task and binary runs: built from
 * the sources as they are now, and still loading the sidecar's EC2 client only when it is needed.
 */
import assert from "node:assert/strict";
import { bundlesStale } from "../tools/bundle.ts";
import { bundleDir, bundleEntry, roleInfo } from "../lib/roles.ts";

const root = new URL("../", import.meta.url).pathname;

Deno.test("the bundles in dist/bundle/ were built from the current sources", () => {
  assert.equal(bundlesStale(), undefined, "stale bundles: run make bundle");
});

/** Every module of the bundle that `entry` imports statically, itself included. */
function staticGraph(dir: string, entry: string): Map<string, string> {
  const modules = new Map<string, string>();
  const visit = (file: string) => {
    if (modules.has(file)) return;
    const source = Deno.readTextFileSync(`${dir}/${file}`);
    modules.set(file, source);
    // esbuild writes static imports as `from"./x.js"` or `import"./x.js"`, dynamic ones as `import("./x.js")`.
    for (const [, imported] of source.matchAll(/(?:from|import)\s*"\.\/([^"]+)"/g)) visit(imported);
  };
  visit(entry);
  return modules;
}

Deno.test("the sidecar bundle keeps the EC2 client out of its start-up graph, in a chunk loaded on first use", () => {
  const role = roleInfo("nlb-sidecar")!;
  const dir = `${root}${bundleDir(role)}`;
  const entry = bundleEntry(role).slice(bundleDir(role).length + 1);
  const atStart = staticGraph(dir, entry);
  // The operation's name as a whole string: its schema constant, kept only with the command that uses it.
  const sendsDescribeInstances = (source: string) => source.includes('"DescribeInstances"');
  assert.ok(atStart.size > 1, "the entry imports its shared chunks");
  assert.deepEqual([...atStart].filter(([, source]) => sendsDescribeInstances(source)).map(([file]) => file), []);
  const ec2Chunks = [...Deno.readDirSync(dir)].map((e) => e.name)
    .filter((file) => sendsDescribeInstances(Deno.readTextFileSync(`${dir}/${file}`)));
  assert.ok(ec2Chunks.length > 0, "some chunk carries the EC2 client");
  const ec2Source = ec2Chunks.map((file) => Deno.readTextFileSync(`${dir}/${file}`)).join("\n");
  assert.ok(!ec2Source.includes('"RunInstances"'), "only the EC2 commands the sidecar sends are bundled");
});
