/**
 * `deno task docs` regenerates what must never drift from its source:
 *
 * - in README.md and docs/*.md, every region between `<!-- BEGIN GENERATED <what>: ... -->` and
 *   `<!-- END GENERATED <what> -->`: a role's settings table (from its one settings declaration), a
 *   container of an example task definition, the memory advice and the fleet table (from the benchmark
 *   results);
 * - in the same files, every figure quoted as a link to BENCHMARKS.md titled `bench:ID[:value|target|verdict|runs]`,
 *   where ID is a figure's id (bench/report.ts, `figureId`) or a unique beginning of it, or `summary`;
 * - BENCHMARKS.md, from bench/results.json;
 * - the CloudFormation and Terraform examples (tools/examples.ts);
 * - the per-role tasks in deno.json (from lib/roles.ts).
 *
 * `--check` changes nothing and exits 1 naming what is stale; the test suite runs the same check.
 * @module
 */
import { type SettingRow, settingRows, type SettingsSpec } from "../lib/config.ts";
import { type RoleName, ROLES, taskCommand } from "../lib/roles.ts";
import { nlbSidecarProgram } from "../lib/nlb_sidecar/program.ts";
import { appmeshHelperProgram } from "../lib/appmesh_helper/program.ts";
import { networkSentryProgram } from "../lib/network_sentry/program.ts";
import {
  type BenchRun,
  figureById,
  figureId,
  quote,
  type QuoteForm,
  readRun,
  REPORT_FILE,
  reportText,
  summary,
} from "../bench/report.ts";
import type { BenchFigure } from "../bench/result.ts";
import { formatNumber } from "../bench/result.ts";
import { formatMarkdown } from "./markdown.ts";
import { staleExamples, taskDefinitionExamples, writeExamples } from "./examples.ts";

const root = new URL("../", import.meta.url);

export const ROLE_SPECS: Readonly<Record<RoleName, SettingsSpec>> = {
  "nlb-sidecar": nlbSidecarProgram.spec,
  "appmesh-helper": appmeshHelperProgram.spec,
  "network-sentry": networkSentryProgram.spec,
};

/** The Markdown files whose generated regions and quoted figures `deno task docs` keeps current. */
export const DOC_FILES = [
  "README.md",
  "docs/nlb-sidecar.md",
  "docs/appmesh-helper.md",
  "docs/network-sentry.md",
  "docs/development.md",
  "docs/migration.md",
  "examples/iam/README.md",
];

const escapeCell = (text: string) => text.replaceAll("|", "\\|");

/** The type and, where a setting has them, the values it accepts: `seconds (>= 1 s)`. */
const typeCell = (row: SettingRow) => row.bounds ? `${row.type} (${row.bounds})` : row.type;

/** The Markdown settings table of one role. */
export function settingsTable(spec: SettingsSpec): string {
  const rows = settingRows(spec).map((row) =>
    `| ${row.env ? `\`${row.env}\`` : ""} | \`${row.flag}\` | ${escapeCell(typeCell(row))} | ${
      escapeCell(row.defaultText)
    } | ${escapeCell(row.help)} |`
  );
  return ["| Environment | Flag | Type | Default | Meaning |", "|---|---|---|---|---|", ...rows].join("\n");
}

// --------------------------------------------------------------------------------------------- memory

/** A memory size in whole 8 MiB steps, rounded up: the steps the hard-limit benchmarks search in. */
const ceil8 = (mib: number) => Math.ceil(mib / 8) * 8;

export interface MemoryAdvice {
  readonly role: RoleName;
  /** The highest measured peak resident set (VmHWM) of the role's figures. */
  readonly peak: BenchFigure;
  /** The smallest hard limit at which the role still did its job. */
  readonly smallestLimit: BenchFigure;
  /** The least `memoryReservation` (MiB): the peak, rounded up to 8 MiB. */
  readonly reservationMiB: number;
  /** The least hard limit (MiB) where one is required: twice the peak, rounded up to 8 MiB. */
  readonly hardLimitMiB: number;
}

const PEAK_FIGURES: Readonly<Record<RoleName, { peaks: string[]; smallest: string }>> = {
  "nlb-sidecar": {
    peaks: ["nlb-sidecar/peak-rss-awsvpc-mode", "nlb-sidecar/peak-rss-bridge-mode"],
    smallest: "nlb-sidecar/smallest-hard-memory-limit",
  },
  "appmesh-helper": {
    peaks: ["appmesh-helper/peak-resident-memory"],
    smallest: "appmesh-helper/smallest-hard-memory-limit",
  },
  "network-sentry": {
    peaks: ["network-sentry/peak-resident-memory-50-containers", "network-sentry/peak-resident-memory-300-containers"],
    smallest: "network-sentry/smallest-hard-memory-limit",
  },
};

/** The figure whose id is `id` or begins with it; throws when none or several do. */
export function figureNamed(run: BenchRun, id: string): BenchFigure {
  if (run.figures.some((f) => figureId(f) === id)) return figureById(run, id);
  const matches = run.figures.filter((f) => figureId(f).startsWith(id));
  if (matches.length !== 1) {
    throw new Error(`bench figure ${id}: ${matches.length ? `${matches.map(figureId).join(", ")} all match` : "none"}`);
  }
  return matches[0];
}

/** The one memory rule, in figures: what each role should reserve, and its hard limit if one is required. */
export function memoryAdvice(run: BenchRun): MemoryAdvice[] {
  return ROLES.map(({ name }) => {
    const figures = PEAK_FIGURES[name];
    const peak = figures.peaks.map((id) => figureNamed(run, id)).reduce((a, b) => b.value > a.value ? b : a);
    return {
      role: name,
      peak,
      smallestLimit: figureNamed(run, figures.smallest),
      reservationMiB: ceil8(peak.value),
      hardLimitMiB: ceil8(2 * peak.value),
    };
  });
}

function memoryTable(run: BenchRun): string {
  const rows = memoryAdvice(run).map((a) => {
    const sentry = a.role === "network-sentry";
    return `| ${a.role} | ${quote(a.peak, "value")} (${a.peak.name}) | ${
      sentry ? "(a host daemon)" : `${a.reservationMiB}`
    } | ${quote(a.smallestLimit, "value")} | ${sentry ? `\`MemoryMax=${a.hardLimitMiB}M\`` : a.hardLimitMiB} |`;
  });
  return [
    "| Role | Measured peak | `memoryReservation`, at least | Smallest hard limit that still worked | Hard limit if required, at least |",
    "|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------- fleet

const FLEET = /^fleet of (\d+), (fixed|adaptive) polling: (.+)$/;
const FLEET_COLUMNS = [
  ["DescribeTargetHealth calls per second", "Calls/s"],
  ["share of calls throttled", "Throttled"],
  ["drain detection delay p50", "Detection p50, intervals of 30 s"],
  ["drain detection delay p99", "Detection p99, intervals of 30 s"],
  ["drain detection delay p99, in intervals of the budget rule", "Detection p99, intervals of the budget rule"],
] as const;

/** The fleet simulation's figures as one table: a row per fleet size and pacing. */
function fleetTable(run: BenchRun): string {
  const rows = new Map<string, Map<string, BenchFigure>>();
  for (const figure of run.figures) {
    const match = figure.name.match(FLEET);
    if (!match) continue;
    const key = `| ${Number(match[1]).toLocaleString("en-US")} | ${match[2]} |`;
    rows.set(key, (rows.get(key) ?? new Map()).set(match[3], figure));
  }
  if (rows.size === 0) throw new Error("bench/results.json has no fleet figures");
  const cell = (figure: BenchFigure | undefined) =>
    figure === undefined ? "" : figure.unit === "%" ? `${formatNumber(figure.value)}%` : formatNumber(figure.value);
  return [
    `| Sidecars | Polling | ${FLEET_COLUMNS.map(([, title]) => title).join(" | ")} |`,
    `|---|---|${FLEET_COLUMNS.map(() => "---").join("|")}|`,
    ...[...rows].map(([key, figures]) =>
      `${key} ${FLEET_COLUMNS.map(([name]) => cell(figures.get(name))).join(" | ")} |`
    ),
  ].join("\n");
}

// ------------------------------------------------------------------------------------------- regions

/** A JSON value on one line, spaced as the examples write it: `{ "name": "x", "value": "1" }`, `[1, 2]`. */
function oneLineJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(oneLineJson).join(", ")}]`;
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  const entries = Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${oneLineJson(item)}`);
  return entries.length ? `{ ${entries.join(", ")} }` : "{}";
}

/** JSON as the examples lay it out: a value on one line when it fits in 100 columns, else one item a line. */
export function compactJson(value: unknown, indent = ""): string {
  const flat = oneLineJson(value);
  if (typeof value !== "object" || value === null || indent.length + flat.length <= 100) return flat;
  const inner = `${indent}  `;
  const items = Array.isArray(value)
    ? value.map((item) => `${inner}${compactJson(item, inner)}`)
    : Object.entries(value).map(([key, item]) => `${inner}${JSON.stringify(key)}: ${compactJson(item, inner)}`);
  const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  return `${open}\n${items.join(",\n")}\n${indent}${close}`;
}

interface Sources {
  readonly run: BenchRun;
  readonly examples: Awaited<ReturnType<typeof taskDefinitionExamples>>;
}

/** What one generated region holds, from the words after `BEGIN GENERATED`. */
function generate(what: string, sources: Sources): string {
  const [kind, ...args] = what.split(" ");
  switch (kind) {
    case "settings":
      if (!(args[0] in ROLE_SPECS)) throw new Error(`no role ${args[0]}`);
      return settingsTable(ROLE_SPECS[args[0] as RoleName]);
    case "container": {
      const container = sources.examples.get(args[0])?.containerDefinitions.find((c) => c.name === args[1]);
      if (!container) throw new Error(`examples/${args[0]}.taskdef.json has no container ${args[1]}`);
      return ["```json", compactJson(container), "```"].join("\n");
    }
    case "memory":
      return memoryTable(sources.run);
    case "fleet":
      return fleetTable(sources.run);
    default:
      throw new Error(`unknown generated region "${what}"`);
  }
}

const REGION = /^([ \t]*)<!-- BEGIN GENERATED ([^:>]+?)(?:: [^>]*)? -->\n[\s\S]*?^[ \t]*<!-- END GENERATED \2 -->$/gm;
/**
 * A quoted figure is a link to its section of BENCHMARKS.md whose title names it: `[53.3 MiB](BENCHMARKS.md#nlb-sidecar
 * "bench:ID")`. A link, unlike an HTML comment, stays inside its paragraph wherever the line wraps.
 */
const QUOTE =
  /\[([^\]]*)\]\(((?:\.\.\/)*)BENCHMARKS\.md(?:#[a-z0-9-]*)? "bench:([a-z0-9/-]+)(?::(value|target|verdict|runs))?"\)/g;

/** Every quoted figure of a Markdown text: the figure's id as written, the form, and the text shown. */
export function quotesIn(text: string): { id: string; form: QuoteForm; text: string }[] {
  return [...text.matchAll(QUOTE)].map((m) => ({ id: m[3], form: (m[4] ?? "value") as QuoteForm, text: m[1] }));
}

/** The text a quote must show: the figure, or for `summary` the benchmark summary. */
export function quotedText(run: BenchRun, id: string, form: QuoteForm): string {
  return id === "summary" ? summary(run.figures) : quote(figureNamed(run, id), form);
}

/** A Markdown file (at `path`) with its generated regions and quoted figures filled in from their sources. */
export function renderDoc(path: string, text: string, sources: Sources): string {
  const regions = text.replace(REGION, (whole, indent: string, what: string) => {
    const begin = whole.slice(0, whole.indexOf("\n"));
    const body = generate(what.trim(), sources).split("\n").map((line) => line ? indent + line : line).join("\n");
    return `${begin}\n\n${body}\n\n${indent}<!-- END GENERATED ${what} -->`;
  });
  const up = "../".repeat(path.split("/").length - 1);
  return regions.replace(QUOTE, (_, _text: string, _up: string, id: string, form: QuoteForm | undefined) => {
    const section = id === "summary" ? "" : `#${figureNamed(sources.run, id).role}`;
    const shown = quotedText(sources.run, id, form ?? "value");
    return `[${shown}](${up}BENCHMARKS.md${section} "bench:${id}${form ? `:${form}` : ""}")`;
  });
}

async function sources(): Promise<Sources> {
  return { run: await readRun(), examples: await taskDefinitionExamples() };
}

/** Each doc file with its current text and the text it should have. */
async function renderedDocs(): Promise<{ path: string; current: string; expected: string }[]> {
  const from = await sources();
  return await Promise.all(DOC_FILES.map(async (path) => {
    const current = await Deno.readTextFile(new URL(path, root));
    return { path, current, expected: await formatMarkdown(renderDoc(path, current, from)) };
  }));
}

// --------------------------------------------------------------------------------------------- tasks

/** deno.json's tasks for each role, as lib/roles.ts defines them: each runs the role's bundle, built first. */
export function expectedRoleTasks(): Record<string, { command: string; dependencies: string[] }> {
  return Object.fromEntries(ROLES.map((role) => [role.name, { command: taskCommand(role), dependencies: ["bundle"] }]));
}

export interface Staleness {
  /** Doc files whose generated regions or quoted figures are not current. */
  readonly docs: string[];
  readonly tasks: string[];
  readonly benchmarks: boolean;
  /** Generated CloudFormation and Terraform files that differ from what the examples give. */
  readonly examples: string[];
}

export async function findStale(): Promise<Staleness> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const tasks = Object.entries(expectedRoleTasks())
    .filter(([name, task]) => JSON.stringify(config.tasks?.[name]) !== JSON.stringify(task))
    .map(([name]) => name);
  const docs = (await renderedDocs()).filter((d) => d.current !== d.expected).map((d) => d.path);
  const benchmarks = await Deno.readTextFile(REPORT_FILE) !== await reportText(await readRun());
  return { docs, tasks, benchmarks, examples: await staleExamples() };
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    const stale = await findStale();
    const found = [...stale.docs, ...stale.tasks.map((t) => `deno.json task ${t}`), ...stale.examples];
    if (stale.benchmarks) found.push("BENCHMARKS.md");
    if (found.length) console.error(`stale: ${found.join(", ")}: run deno task docs`);
    Deno.exit(found.length ? 1 : 0);
  }
  for (const doc of await renderedDocs()) {
    if (doc.current !== doc.expected) await Deno.writeTextFile(new URL(doc.path, root), doc.expected);
  }
  const configUrl = new URL("deno.json", root);
  const config = JSON.parse(await Deno.readTextFile(configUrl));
  config.tasks = { ...config.tasks, ...expectedRoleTasks() };
  await Deno.writeTextFile(configUrl, JSON.stringify(config, null, 2) + "\n");
  await Deno.writeTextFile(REPORT_FILE, await reportText(await readRun()));
  await writeExamples();
  console.log(`regenerated: ${DOC_FILES.join(", ")}, BENCHMARKS.md, the examples, deno.json's role tasks`);
}
