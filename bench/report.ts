/**
 * BENCHMARKS.md, rendered from the results `deno task bench` keeps in bench/results.json: a summary line
 * (N of M targets met), then one section per role with its targets (figure, target, result, verdict, runs)
 * and its informational figures in a table of their own, each table followed by numbered notes on how its
 * figures were taken. Figures marked `headline` (outcomes: deployment time, failed requests) lead the page
 * in a table of their own. The docs quote figures from the same file (see `quote`), so the page and the
 * prose can never disagree.
 * @module
 */
import { type BenchFigure, type BenchRole, formatNumber } from "./result.ts";
import { formatMarkdown } from "../tools/markdown.ts";

/** One whole `deno task bench` run, as bench/results.json holds it. */
export interface BenchRun {
  /** When the run started, ISO 8601. */
  readonly startedAt: string;
  readonly machine: string;
  /** The runtime that ran the roles, e.g. `Deno 2.9.6 (V8 ..., TypeScript ...)`. */
  readonly runtime: string;
  /** How long the whole run took. */
  readonly seconds: number;
  /** Where the figures come from when that is not `deno task bench` writing them itself. */
  readonly source?: string;
  readonly figures: readonly BenchFigure[];
}

const root = new URL("../", import.meta.url);
export const RESULTS_FILE = new URL("bench/results.json", root);
export const REPORT_FILE = new URL("BENCHMARKS.md", root);

export async function readRun(file: URL = RESULTS_FILE): Promise<BenchRun> {
  return JSON.parse(await Deno.readTextFile(file));
}

const ROLE_ORDER: readonly BenchRole[] = ["nlb-sidecar", "appmesh-helper", "network-sentry"];
/** A figure's label longer than this gets its scenario (the part before `: `) on a row of its own. */
const LABEL_WIDTH = 90;

/** A figure's stable name in the docs' quotes: `<role>/<its name in lower case, words joined by ->`. */
export function figureId(figure: BenchFigure): string {
  return `${figure.role}/${figure.name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "")}`;
}

/** The figure of that id; throws naming the id when the run has none. */
export function figureById(run: BenchRun, id: string): BenchFigure {
  const figure = run.figures.find((f) => figureId(f) === id);
  if (!figure) throw new Error(`bench/results.json has no figure ${id}`);
  return figure;
}

/** "19 of 23 targets met". */
export function summary(figures: readonly BenchFigure[]): string {
  const targeted = figures.filter((f) => f.target !== undefined);
  return `${targeted.filter((f) => f.met).length} of ${targeted.length} targets met`;
}

/**
 * The result as printed: the usual rounding, with more decimals when that rounding would make a missed
 * `<= N` / `< N` / `>= N` / `> N` target look met.
 */
export function resultText(figure: BenchFigure): string {
  const plain = formatNumber(figure.value);
  const bound = figure.target?.match(/^([<>]=?)\s*(-?[\d.]+)\s*\S*$/);
  if (!bound || figure.met !== false) return `${plain} ${figure.unit}`;
  const limit = Number(bound[2]);
  const shown = Number(plain);
  const looksMet = { "<=": shown <= limit, "<": shown < limit, ">=": shown >= limit, ">": shown > limit }[bound[1]];
  return `${looksMet ? String(Number(figure.value.toFixed(3))) : plain} ${figure.unit}`;
}

export type QuoteForm = "value" | "target" | "verdict" | "runs";

/** What the docs print for `<!--bench:ID[:FORM]-->`: the figure's result, target, verdict or runs. */
export function quote(figure: BenchFigure, form: QuoteForm): string {
  switch (form) {
    case "value":
      return resultText(figure);
    case "target":
      if (figure.target === undefined) throw new Error(`${figureId(figure)} is informational: it has no target`);
      return figure.target;
    case "verdict":
      if (figure.target === undefined) throw new Error(`${figureId(figure)} is informational: it has no verdict`);
      return figure.met ? "met" : "NOT MET";
    case "runs":
      return `${figure.runs.map(formatNumber).join(", ")} ${figure.unit}`;
  }
}

/** Numbered notes of one section: a method shared by several figures is one note. */
class Notes {
  readonly #numbers = new Map<string, number>();
  #printed = 0;

  ref(method: string): string {
    if (!this.#numbers.has(method)) this.#numbers.set(method, this.#numbers.size + 1);
    return ` [${this.#numbers.get(method)}]`;
  }

  /** The notes referenced since the last call, as a numbered list. */
  flush(): string[] {
    const fresh = [...this.#numbers].filter(([, n]) => n > this.#printed);
    this.#printed = this.#numbers.size;
    return fresh.length ? ["", ...fresh.map(([method, n]) => `${n}. ${method}`)] : [];
  }
}

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");
const row = (cells: readonly string[]) => `| ${cells.map(cell).join(" | ")} |`;

interface Columns {
  readonly withRole: boolean;
  readonly targeted: boolean;
}

function header({ withRole, targeted }: Columns): string[] {
  const names = [...(withRole ? ["Role"] : []), "Figure", ...(targeted ? ["Target"] : []), "Result"];
  const all = [...names, ...(targeted ? ["Verdict"] : []), "Runs"];
  return [row(all), row(all.map(() => "---"))];
}

function figureCells(figure: BenchFigure, label: string, columns: Columns): string[] {
  return [
    ...(columns.withRole ? [figure.role] : []),
    label,
    ...(columns.targeted ? [figure.target ?? ""] : []),
    `**${resultText(figure)}**`,
    ...(columns.targeted ? [figure.met ? "met" : "**NOT MET**"] : []),
    figure.runs.map(formatNumber).join(", "),
  ];
}

/** Consecutive figures of one scenario (`<scenario>: <what>`), or a figure on its own. */
function groups(figures: readonly BenchFigure[]): BenchFigure[][] {
  const out: BenchFigure[][] = [];
  const scenario = (f: BenchFigure) => f.name.includes(": ") ? f.name.slice(0, f.name.indexOf(": ")) : undefined;
  for (const figure of figures) {
    const last = out.at(-1);
    if (last && scenario(figure) !== undefined && scenario(last[0]) === scenario(figure)) last.push(figure);
    else out.push([figure]);
  }
  return out;
}

function table(figures: readonly BenchFigure[], columns: Columns, notes: Notes): string[] {
  const lines = header(columns);
  // Result and Runs, and Target and Verdict for targets, stay empty on a scenario's own row.
  const empty = columns.targeted ? ["", "", "", ""] : ["", ""];
  const scenarioRow = (label: string) => [...(columns.withRole ? [""] : []), label, ...empty];
  for (const group of groups(figures)) {
    const first = group[0];
    const split = first.name.includes(": ") && (group.length > 1 || first.name.length > LABEL_WIDTH);
    if (!split) {
      lines.push(row(figureCells(first, first.name + notes.ref(first.method), columns)));
      continue;
    }
    const shared = group.every((f) => f.method === first.method);
    const scenario = first.name.slice(0, first.name.indexOf(": "));
    lines.push(row(scenarioRow(`**${scenario}**${shared ? notes.ref(first.method) : ""}`)));
    for (const figure of group) {
      const what = figure.name.slice(scenario.length + 2);
      lines.push(row(figureCells(figure, `${what}${shared ? "" : notes.ref(figure.method)}`, columns)));
    }
  }
  return lines;
}

function section(title: string, figures: readonly BenchFigure[], withRole: boolean): string[] {
  const notes = new Notes();
  const targeted = figures.filter((f) => f.target !== undefined);
  const informational = figures.filter((f) => f.target === undefined);
  const lines = ["", `## ${title}`];
  if (targeted.length) {
    lines.push("", `${summary(targeted)}.`, "", ...table(targeted, { withRole, targeted: true }, notes));
    lines.push(...notes.flush());
  }
  if (informational.length) {
    lines.push("", `### ${title}: informational figures (no target)`, "");
    lines.push(...table(informational, { withRole, targeted: false }, notes), ...notes.flush());
  }
  return lines;
}

function missed(figures: readonly BenchFigure[]): string {
  const names = figures.filter((f) => f.met === false).map((f) => `${f.role} ${f.name}`);
  return names.length ? ` Not met: ${names.join("; ")}.` : "";
}

/** The whole of BENCHMARKS.md (before `deno fmt` lays out its tables). */
export function renderReport(run: BenchRun): string {
  const headline = run.figures.filter((f) => f.headline);
  const roles = ROLE_ORDER.filter((role) => run.figures.some((f) => f.role === role && !f.headline));
  const informational = run.figures.filter((f) => f.target === undefined).length;
  return [
    "# Benchmarks",
    "",
    `**${summary(run.figures)}.**${missed(run.figures)} ${informational} more figures are informational.`,
    "",
    `Run of ${run.startedAt.slice(0, 16).replace("T", " ")} UTC on ${run.machine}, ${run.runtime}; ${
      run.seconds.toFixed(0)
    } s in all.`,
    ...(run.source ? [`Figures ${run.source}.`] : []),
    "Each result is the median of the runs beside it, rounded for display; verdicts are taken on the unrounded",
    "values, and the hard-limit, throttling and fleet rows need every run (or their worst run) within the target.",
    "`deno task bench` writes the results to bench/results.json and renders this page from them; `deno task docs`",
    "renders it again. Do not edit it by hand.",
    ...(headline.length ? section("Outcomes", headline, true) : []),
    ...roles.flatMap((role) => section(role, run.figures.filter((f) => f.role === role && !f.headline), false)),
    "",
    "## How the figures are taken",
    "",
    "Reproduce: `make bench` (or `deno task bench [role]`; as root, for the container rows). Memory figures are the",
    "peak resident set (VmHWM) of the role's bundle (dist/bundle/, tools/bundle.ts) running as its own process with",
    "exactly the permission and V8 flags of its compiled binary, started by `deno run`: the `deno` executable (with its",
    "tooling) stands in for the smaller `denort` runtime that `deno compile` embeds, which the bench machine could not",
    "download. Hard-limit rows run the role in a container, `docker run --memory M --memory-swap M` as ECS does for a",
    "container's `memory`, from an image of only the `deno` executable, its shared libraries and the bundle, with the",
    "role's `health` command (the sentry's `status`) run in the same container every 5 s as ECS runs a `healthCheck`.",
    "The containers' disk reads ahead 128 KiB (an ext4 loop device the bench sets up), as EBS and NVMe volumes",
    "usually do, because under a hard limit every page fault on the executable reads that much into the",
    "container's memory, and a disk that reads ahead 8 MiB would measure the machine instead of the role.",
    "",
  ].join("\n");
}

/** BENCHMARKS.md as `deno fmt` keeps it. */
export async function reportText(run: BenchRun): Promise<string> {
  return await formatMarkdown(renderReport(run));
}

/** Keeps a whole run: bench/results.json first (the source), then BENCHMARKS.md rendered from it. */
export async function writeRun(run: BenchRun): Promise<void> {
  await Deno.writeTextFile(RESULTS_FILE, JSON.stringify(run, null, 2) + "\n");
  await Deno.writeTextFile(REPORT_FILE, await reportText(run));
}
