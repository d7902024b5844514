/**
 * `deno task docs` regenerates what must never drift from the code: the per-role sections of README.md
 * (from docs/<role>.md, with each settings table generated from the role's one settings declaration)
 * and the per-role tasks in deno.json (from lib/roles.ts). `--check` changes nothing and exits 1 when
 * anything is stale; the test suite runs that check.
 * @module
 */
import { type SettingRow, settingRows, type SettingsSpec } from "../lib/config.ts";
import { type RoleName, ROLES, taskCommand } from "../lib/roles.ts";
import { nlbSidecarProgram } from "../lib/nlb_sidecar/program.ts";
import { appmeshHelperProgram } from "../lib/appmesh_helper/program.ts";
import { networkSentryProgram } from "../lib/network_sentry/program.ts";

const root = new URL("../", import.meta.url);

export const ROLE_SPECS: Readonly<Record<RoleName, SettingsSpec>> = {
  "nlb-sidecar": nlbSidecarProgram.spec,
  "appmesh-helper": appmeshHelperProgram.spec,
  "network-sentry": networkSentryProgram.spec,
};

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

/** docs/<role>.md with its `<!-- settings:<role> -->` line replaced by the generated table. */
export async function roleSection(role: RoleName): Promise<string> {
  const source = await Deno.readTextFile(new URL(`docs/${role}.md`, root));
  const marker = `<!-- settings:${role} -->`;
  if (!source.includes(marker)) throw new Error(`docs/${role}.md has no ${marker} line`);
  return source.replace(marker, settingsTable(ROLE_SPECS[role])).trim();
}

const begin = (role: string) =>
  `<!-- BEGIN GENERATED FROM docs/${role}.md: edit that file, then run deno task docs -->`;
const end = (role: string) => `<!-- END GENERATED FROM docs/${role}.md -->`;

/** README.md with every role region regenerated. */
export async function renderReadme(current: string): Promise<string> {
  let out = current;
  for (const role of ROLES) {
    const start = out.indexOf(begin(role.name));
    const stop = out.indexOf(end(role.name));
    if (start < 0 || stop < start) throw new Error(`README.md lacks the generated region for ${role.name}`);
    out = out.slice(0, start) + `${begin(role.name)}\n\n${await roleSection(role.name)}\n\n` + out.slice(stop);
  }
  return out;
}

/** deno.json's tasks for each role, as lib/roles.ts defines them: each runs the role's bundle, built first. */
export function expectedRoleTasks(): Record<string, { command: string; dependencies: string[] }> {
  return Object.fromEntries(ROLES.map((role) => [role.name, { command: taskCommand(role), dependencies: ["bundle"] }]));
}

export interface Staleness {
  readonly readme: boolean;
  readonly tasks: string[];
}

export async function findStale(): Promise<Staleness> {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const tasks = Object.entries(expectedRoleTasks())
    .filter(([name, task]) => JSON.stringify(config.tasks?.[name]) !== JSON.stringify(task))
    .map(([name]) => name);
  return { readme: (await formatMarkdown(await renderReadme(readme))) !== readme, tasks };
}

/** deno fmt's Markdown style, so the generated README is byte-identical to what `deno fmt` keeps. */
async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "md", "-"],
    stdin: "piped",
    stdout: "piped",
    cwd: root.pathname,
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  if (!output.success) throw new Error("deno fmt could not format README.md");
  return new TextDecoder().decode(output.stdout);
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    const stale = await findStale();
    if (stale.readme) console.error("README.md is stale: run deno task docs");
    if (stale.tasks.length) console.error(`deno.json tasks are stale: ${stale.tasks.join(", ")}: run deno task docs`);
    Deno.exit(stale.readme || stale.tasks.length ? 1 : 0);
  }
  const readmeUrl = new URL("README.md", root);
  await Deno.writeTextFile(readmeUrl, await formatMarkdown(await renderReadme(await Deno.readTextFile(readmeUrl))));
  const configUrl = new URL("deno.json", root);
  const config = JSON.parse(await Deno.readTextFile(configUrl));
  config.tasks = { ...config.tasks, ...expectedRoleTasks() };
  await Deno.writeTextFile(configUrl, JSON.stringify(config, null, 2) + "\n");
  console.log("README.md and deno.json tasks regenerated");
}
