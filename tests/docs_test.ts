/**
 * What the docs say holds: figures are quoted from the benchmark results (never copied, never contradicted),
 * the examples follow the memory rule those figures give, every link leads somewhere, and the project
 * speaks only of itself.
 */
import assert from "node:assert/strict";
import { DOC_FILES, memoryAdvice, quotedText, quotesIn } from "../tools/docs.ts";
import { readRun } from "../bench/report.ts";
import { taskDefinitionExamples } from "../tools/examples.ts";
import { roleInfo } from "../lib/roles.ts";

const root = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, root));
const run = await readRun();
const docs = new Map(await Promise.all(DOC_FILES.map(async (path) => [path, await read(path)] as const)));

/** Prose only: code blocks, generated regions and quoted figures taken out. */
function prose(text: string): string {
  return text
    .replace(/^([ \t]*)```[\s\S]*?^\1```$/gm, "")
    .replace(/<!-- BEGIN GENERATED ([^:>]+?)(?:: [^>]*)? -->[\s\S]*?<!-- END GENERATED \1 -->/g, "")
    .replace(/\[[^\]]*\]\([^)]*"bench:[^"]*"\)/g, "[quoted figure]");
}

const normal = (text: string) => text.replace(/\s+/g, " ").trim();

Deno.test("every figure the docs quote is the one bench/results.json holds", () => {
  let quotes = 0;
  for (const [path, text] of docs) {
    for (const q of quotesIn(text)) {
      quotes++;
      const expected = quotedText(run, q.id, q.form);
      assert.equal(normal(q.text), expected, `${path}: bench:${q.id} shows ${q.text}, BENCHMARKS.md ${expected}`);
    }
  }
  assert.ok(quotes >= 20, `the docs quote their figures (${quotes} quotes)`);
});

/**
 * Memory sizes in prose that are not benchmark figures, each with why it may stand unquoted. Any other
 * `N MiB` must be quoted from the results, so that a new bench run can never leave it stale.
 */
const UNQUOTED_MIB: ReadonlyArray<readonly [RegExp, string]> = [
  [/\b8 MiB steps\b/, "the step of the hard-limit searches"],
  [/reading ahead 8 MiB|reads ahead 8 MiB/, "a disk's read-ahead, not a figure"],
  [/rotated at 5 MiB/, "the log file's rotation size, a setting"],
  [
    /peaked at 92 MiB resident, and a bare `listContainers` against a real `dockerd` peaked at 75 MiB where the same calls over `fetch` took 42 MiB/,
    "measurements of dockerode made when it was dropped; no bench runs it",
  ],
  [/saw 82 MiB at 300 containers/, "an earlier run on a loaded machine, named as such"],
  [/at 48 MiB|at 64 MiB|under a 48 MiB|under a 64 MiB/, "the limits the hard-limit runs are named by"],
];

Deno.test("memory figures in the docs are quoted from the benchmark results, not copied", () => {
  for (const [path, text] of docs) {
    for (const line of normal(prose(text)).split(/(?<=[.;:!?])\s/)) {
      const rest = UNQUOTED_MIB.reduce((s, [allowed]) => s.replace(new RegExp(allowed, "g"), "(allowed)"), line);
      const copied = rest.match(/\b\d+(?:\.\d+)? ?MiB\b/);
      assert.equal(copied, null, `${path}: "${copied?.[0]}" in "${line}": quote it from BENCHMARKS.md`);
    }
  }
});

Deno.test("no prose claims a verdict: verdicts are quoted from the results", () => {
  const claim =
    /\bNOT MET\b|\btargets? (?:is |are |were )?met\b|\bwithin (?:its|the) (?:memory )?(?:budget|target)\b|\bstays within\b|\bmeets? (?:its|the) (?:budget|target)\b/i;
  for (const [path, text] of docs) {
    for (const line of normal(prose(text)).split(/(?<=[.;!?])\s/)) {
      assert.doesNotMatch(line, claim, `${path}: "${line}": quote the verdict from BENCHMARKS.md`);
    }
  }
});

Deno.test("the examples follow the memory rule the measured figures give", async () => {
  const advice = new Map(memoryAdvice(run).map((a) => [a.role, a]));
  let sidecars = 0;
  for (const [name, task] of await taskDefinitionExamples()) {
    for (const container of task.containerDefinitions) {
      const role = String(container.image).match(/ecs-lifecycle\/([a-z-]+):/)?.[1];
      if (!role || !roleInfo(role)) continue;
      sidecars++;
      const rule = advice.get(role as "nlb-sidecar")!;
      assert.equal(
        container.memory,
        undefined,
        `${name}: ${role} has no hard memory limit (an OOM kill skips the drain)`,
      );
      assert.ok(
        Number(container.memoryReservation) >= rule.reservationMiB,
        `${name}: ${role} reserves ${container.memoryReservation} MiB, under its measured peak (${rule.peak.value} MiB)`,
      );
      assert.equal(container.essential, true, `${name}: ${role} is essential`);
      assert.equal(
        container.restartPolicy,
        undefined,
        `${name}: ${role} has no restart policy (it would undo the exit)`,
      );
    }
  }
  assert.ok(sidecars >= 3);
  const unit = await read("deploy/ecs-network-sentry.service");
  const memoryMax = Number(unit.match(/^MemoryMax=(\d+)M$/m)?.[1]);
  const sentry = advice.get("network-sentry")!;
  assert.ok(
    memoryMax >= sentry.hardLimitMiB,
    `MemoryMax=${memoryMax}M is at least twice the peak of ${sentry.peak.value}`,
  );
});

// ---------------------------------------------------------------------------------------------- links

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes. */
const anchor = (heading: string) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-");

async function anchorsOf(path: string): Promise<Set<string>> {
  const text = await read(path);
  return new Set(
    [...text.replace(/^```[\s\S]*?^```$/gm, "").matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      anchor(m[1].replaceAll("`", ""))
    ),
  );
}

Deno.test("every relative link of the docs leads to a file, and every #anchor to a heading", async () => {
  const files = [...DOC_FILES, "CHANGELOG.md"];
  for (const path of files) {
    const text = (await read(path)).replace(/^([ \t]*)```[\s\S]*?^\1```$/gm, "").replace(/`[^`\n]*`/g, "");
    const base = new URL(path, root);
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)(?: "[^"]*")?\)/g)) {
      if (/^[a-z]+:/.test(target)) continue;
      const [file, hash] = target.split("#");
      const url = file ? new URL(file, base) : base;
      const stat = await Deno.stat(url).catch(() => undefined);
      assert.ok(stat, `${path}: link to ${target}: no such file`);
      if (hash && stat.isFile) {
        const relative = url.href.slice(root.href.length);
        assert.ok((await anchorsOf(relative)).has(hash), `${path}: link to ${target}: no such heading`);
      }
    }
  }
});

// ------------------------------------------------------------------------------------------ wording

Deno.test("docs, help texts and comments speak of the project, not of how it was made", async () => {
  const process =
    /\bthe issue\b|\bissue's\b|\bthe lead\b|\blead's\b|\bthis session\b|\breview(?:s|ers?|ed)?\b|\bthe brief\b/i;
  const paths: string[] = [...DOC_FILES, "CHANGELOG.md", "BENCHMARKS.md", "bench/results.json", "Makefile"];
  for (const dir of ["lib", "cmd", "bench", "tools", "deploy", "demo", "sim"]) {
    for await (const entry of Deno.readDir(new URL(`${dir}/`, root))) {
      if (entry.isFile) paths.push(`${dir}/${entry.name}`);
      if (entry.isDirectory) {
        for await (const inner of Deno.readDir(new URL(`${dir}/${entry.name}/`, root))) {
          if (inner.isFile) paths.push(`${dir}/${entry.name}/${inner.name}`);
        }
      }
    }
  }
  for (const path of paths) {
    const lines = (await read(path)).split("\n");
    for (const [n, line] of lines.entries()) {
      assert.doesNotMatch(line, process, `${path}:${n + 1}: ${line.trim()}`);
    }
  }
});
