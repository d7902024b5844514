/**
 * BENCHMARKS.md is for people: a summary first, narrow tables per role, informational figures apart and
 * without a verdict, every figure's method in a numbered note, and room for a headline table.
 */
import assert from "node:assert/strict";
import {
  type BenchRun,
  figureId,
  readRun,
  renderReport,
  REPORT_FILE,
  reportText,
  resultText,
  summary,
} from "../bench/report.ts";
import type { BenchFigure } from "../bench/result.ts";

const recorded = await readRun();
/** The page people read: the committed BENCHMARKS.md. */
const page = await Deno.readTextFile(REPORT_FILE);

/** The cells of every table row of a Markdown page, the header and the `---` rows left out. */
function tableRows(markdown: string): string[][] {
  return markdown.split("\n")
    .filter((line) => line.startsWith("|") && !/^\|[\s|-]+\|$/.test(line))
    .map((line) => line.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim()));
}

/** Each `## ` section of the page with its text. */
function sections(markdown: string): Map<string, string> {
  const parts = markdown.split(/^## /m).slice(1);
  return new Map(parts.map((part) => [part.slice(0, part.indexOf("\n")), part]));
}

const figure = (overrides: Partial<BenchFigure> & Pick<BenchFigure, "name">): BenchFigure =>
  ({ role: "nlb-sidecar", value: 1, unit: "s", runs: [1, 1, 1], method: "a method", ...overrides }) as BenchFigure;

const run = (figures: BenchFigure[]): BenchRun => ({
  startedAt: "2026-12-01T10:29:53.481Z",
  machine: "2 cores",
  runtime: "Deno 2.9.6",
  seconds: 1,
  figures,
});

Deno.test("BENCHMARKS.md is rendered from bench/results.json and up to date", async () => {
  assert.equal(page, await reportText(recorded), "BENCHMARKS.md is stale: run deno task docs");
});

Deno.test("BENCHMARKS.md opens with how many targets were met, counted from the results", () => {
  const firstParagraph = page.split("\n\n")[1].replace(/\s+/g, " ");
  const targeted = recorded.figures.filter((f) => f.target !== undefined);
  const met = targeted.filter((f) => f.met).length;
  assert.match(firstParagraph, new RegExp(`^\\*\\*${met} of ${targeted.length} targets met\\.\\*\\*`));
  for (const missed of targeted.filter((f) => !f.met)) assert.ok(firstParagraph.includes(missed.name), missed.name);
});

Deno.test("no table cell is wider than 100 characters, besides its note number", () => {
  for (const cells of tableRows(page)) {
    for (const cell of cells.map((c) => c.replace(/ \[\d+\]$/, ""))) {
      assert.ok(cell.length <= 100, `${cell.length} characters: ${cell}`);
    }
  }
});

Deno.test("one section per role; targets carry a verdict, informational figures have a table of their own without", () => {
  for (const role of ["nlb-sidecar", "appmesh-helper", "network-sentry"]) {
    const text = sections(page).get(role);
    assert.ok(text, `a section for ${role}`);
    const [targets, informational] = text.split(/^### .*informational.*$/m);
    assert.match(targets, /^\| Figure +\| Target +\| Result +\| Verdict +\| Runs +\|$/m);
    if (informational !== undefined) {
      assert.match(informational, /^\| Figure +\| Result +\| Runs +\|$/m);
      for (const cells of tableRows(informational).slice(1)) assert.equal(cells.length, 3, cells.join(" | "));
    }
  }
  const informational = recorded.figures.filter((f) => f.target === undefined).length;
  assert.ok(informational > 0);
  const verdicts = tableRows(page).filter((cells) => cells.includes("met") || cells.includes("**NOT MET**"));
  assert.equal(verdicts.length, recorded.figures.length - informational, "a verdict on every target, on nothing else");
});

Deno.test("every figure's method is a numbered note under its table, a shared method noted once", () => {
  for (const [title, text] of sections(page)) {
    const refs = new Set([...text.matchAll(/ \[(\d+)\](?= *\|)/g)].map((m) => Number(m[1])));
    // A note goes on over its indented lines.
    const notes = [...text.matchAll(/^(\d+)\. (.+(?:\n {3,}.+)*)$/gm)]
      .map((m) => ({ n: Number(m[1]), text: m[2].replace(/\s+/g, " ") }));
    assert.deepEqual(notes.map((n) => n.n), [...refs].sort((a, b) => a - b), `${title}: each note referenced`);
    assert.equal(new Set(notes.map((n) => n.text)).size, notes.length, `${title}: no note twice`);
  }
  const notes = page.replace(/\s+/g, " ");
  for (const f of recorded.figures) assert.ok(notes.includes(f.method), `${figureId(f)}'s method`);
});

Deno.test("figures of one scenario share a row naming it; a long name is split the same way", () => {
  const rendered = renderReport(run([
    figure({ name: "fleet of 100, fixed polling: calls per second", method: "fleet" }),
    figure({ name: "fleet of 100, fixed polling: share throttled", method: "fleet" }),
    figure({ name: `deployment of 200 tasks at once, adaptive polling: ${"very ".repeat(12)}long`, method: "d" }),
  ]));
  assert.match(rendered, /^\| \*\*fleet of 100, fixed polling\*\* \[1\] \|/m);
  assert.match(rendered, /^\| calls per second \| \*\*1 s\*\* \|/m);
  assert.match(rendered, /^\| \*\*deployment of 200 tasks at once, adaptive polling\*\* \[2\] \|/m);
});

Deno.test("headline figures lead the page in their own table, with the role, and count in the summary", () => {
  const headlined = renderReport(run([
    figure({ name: "peak RSS", target: "<= 58 MiB", met: true, unit: "MiB" }),
    figure({ name: "failed requests in a deployment", target: "0", met: false, headline: true, value: 3 }),
  ]));
  const titles = [...sections(headlined).keys()];
  assert.deepEqual(titles.slice(0, 2), ["Outcomes", "nlb-sidecar"]);
  assert.match(
    sections(headlined).get("Outcomes")!,
    /^\| nlb-sidecar \| failed requests in a deployment \[1\] \| 0 \|/m,
  );
  assert.ok(!sections(headlined).get("nlb-sidecar")!.includes("failed requests"), "not repeated in the role's table");
  assert.match(headlined, /^\*\*1 of 2 targets met\.\*\* Not met: nlb-sidecar failed requests in a deployment\./m);
});

Deno.test("a missed target never prints a result that looks met", () => {
  const missed = figure({ name: "peak", value: 56.04, unit: "MiB", target: "<= 56 MiB", met: false });
  assert.equal(resultText(missed), "56.04 MiB");
  assert.equal(resultText({ ...missed, met: true, value: 55.96 } as BenchFigure), "56 MiB");
  assert.equal(resultText(figure({ name: "x", value: 12.34, unit: "%" })), "12.3 %");
});

Deno.test("figure ids are unique, and informational figures have neither target nor verdict", () => {
  const ids = recorded.figures.map(figureId);
  assert.equal(new Set(ids).size, ids.length);
  for (const f of recorded.figures) assert.equal(f.target === undefined, f.met === undefined, figureId(f));
  assert.equal(summary(recorded.figures).split(" ")[2], String(recorded.figures.filter((f) => f.target).length));
});
