/**
 * One declaration per setting (env name, flag, type, default, help), parsed strictly from flags and
 * environment. Flags win over env. Every bad input is a {@link ConfigError} naming the setting;
 * {@link checkSettings} lists them all, and the role runner prints each on a stderr line of its own and
 * exits with code 2.
 * @module
 */
import { parseArgs } from "node:util";

/**
 * Raised for every configuration problem; `setting` is the name an operator typed (env or flag).
 *
 * @example Validate a role's settings before deploying them
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * try {
 *   parseSettings(nlbSidecar.nlbSidecarSettings, { args: [], env: { DEREGISTRATION_WAIT: "2m" } });
 * } catch (error) {
 *   if (error instanceof ConfigError) console.error(error.setting, error.message);
 * }
 * ```
 */
export class ConfigError extends Error {
  /** `reason` says what is wrong; the message is `SETTING="value": reason`. */
  constructor(readonly setting: string, readonly value: string | undefined, reason: string) {
    super(
      value === undefined ? `${setting}: ${reason}` : `${setting}=${JSON.stringify(value)}: ${reason}`,
    );
    this.name = "ConfigError";
  }
}

/**
 * How a raw string becomes a typed value; throws a plain message (the reason) when it cannot.
 *
 * @example
 * ```ts
 * const port: Parser<number> = (raw) => {
 *   const value = Number(raw);
 *   if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error("expected a port number");
 *   return value;
 * };
 * ```
 */
export type Parser<T> = (raw: string) => T;

/**
 * One setting, declared once: where it comes from, what it looks like, what it means, and how it is parsed.
 *
 * @example Print where each of a role's settings comes from
 * ```ts
 * import { appmeshHelper } from "../mod.ts";
 *
 * const settings: Setting<unknown>[] = Object.values(appmeshHelper.appmeshHelperSettings);
 * for (const setting of settings) console.log(`--${setting.flag}`, setting.env ?? "", setting.help);
 * ```
 */
export interface Setting<T> {
  /** Environment variable, when the setting can come from the environment. */
  readonly env?: string;
  /** Long flag name without dashes. */
  readonly flag: string;
  /** One-letter short flag, kept where an original tool had one. */
  readonly short?: string;
  /** What the value looks like in help text: `seconds`, `url`, `a|b`. */
  readonly type: string;
  /** One sentence for `--help` and the README. */
  readonly help: string;
  /** Used when neither flag nor env is given. `undefined` with `required` false means "not set". */
  readonly default?: T;
  /** Without a value the role does not start. */
  readonly required?: boolean;
  /** Boolean switches take no value on the command line. */
  readonly isSwitch?: boolean;
  /**
   * The values accepted, as `--help` and the README state them (`>= 1 s`, `1-65535`): enforced by `parse`,
   * or by the role's validate where the rule depends on other input.
   */
  readonly bounds?: string;
  /** Turns the raw flag or env value into the setting's value. */
  readonly parse: Parser<T>;
}

/**
 * A role's full set of settings, keyed by the property name the code uses.
 *
 * @example
 * ```ts
 * import { networkSentry } from "../mod.ts";
 *
 * const spec: SettingsSpec = networkSentry.networkSentrySettings;
 * console.log(Object.keys(spec).length, "settings");
 * ```
 */
// deno-lint-ignore no-explicit-any
export type SettingsSpec = Record<string, Setting<any>>;

/**
 * The type of one setting's parsed value.
 *
 * @example
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * const mode: SettingValue<typeof nlbSidecar.nlbSidecarSettings.drainMode> = "connections";
 * ```
 */
export type SettingValue<S> = S extends Setting<infer T> ? T : never;

/**
 * The parsed values; a setting with neither a default nor `required` may be `undefined`.
 *
 * @example
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * type NlbSidecarConfig = ConfigOf<typeof nlbSidecar.nlbSidecarSettings>;
 * const waitSeconds = (config: NlbSidecarConfig): number => config.deregistrationWait;
 * ```
 */
export type ConfigOf<Spec extends SettingsSpec> = { readonly [K in keyof Spec]: SettingValue<Spec[K]> };

/** `T` when the declaration guarantees a value (a default, or required), else `T | undefined`. */
type Present<O, T> = O extends { default: T } | { required: true } ? T : T | undefined;

interface Common<T> {
  env?: string;
  flag: string;
  short?: string;
  help: string;
  default?: T;
  required?: boolean;
  bounds?: string;
}

/**
 * The longest duration any setting accepts: timers hold at most 2^31-1 ms (24.8 days) and fire at once
 * beyond it, and two settings are sometimes added into one wait.
 */
export const MAX_SECONDS = 1_000_000;

/**
 * Seconds as a non-negative decimal (`0.5` is allowed so tests can run fast), at most `MAX_SECONDS`;
 * `above` (exclusive) and `min` (inclusive) raise the floor, and `--help` states it.
 */
export function seconds<const O extends Common<number> & { min?: number; above?: number }>(
  o: O,
): Setting<Present<O, number>> {
  const { min, above, ...rest } = o;
  const floor = above !== undefined ? `> ${above} s` : min !== undefined ? `>= ${min} s` : undefined;
  return <Setting<Present<O, number>>> {
    bounds: floor,
    ...rest,
    type: "seconds",
    parse: (raw) => {
      const trimmed = raw.trim();
      if (!/^\d+(\.\d+)?$/.test(trimmed)) throw new Error("expected a non-negative number of seconds");
      const value = Number(trimmed);
      if (value > MAX_SECONDS) throw new Error(`expected at most ${MAX_SECONDS} seconds (about 11 days)`);
      if (above !== undefined && value <= above) throw new Error(`expected more than ${above} seconds`);
      if (min !== undefined && value < min) throw new Error(`expected at least ${min} seconds`);
      return value;
    },
  };
}

/** A whole number within bounds. */
export function integer<const O extends Common<number> & { min?: number; max?: number }>(
  o: O,
): Setting<Present<O, number>> {
  const { min = 0, max = Number.MAX_SAFE_INTEGER, ...rest } = o;
  return <Setting<Present<O, number>>> {
    bounds: max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}-${max}`,
    ...rest,
    type: "integer",
    parse: (raw) => {
      const trimmed = raw.trim();
      if (!/^-?\d+$/.test(trimmed)) throw new Error("expected a whole number");
      const value = Number(trimmed);
      if (value < min || value > max) throw new Error(`expected a whole number from ${min} to ${max}`);
      return value;
    },
  };
}

/** Free text; empty strings are rejected because an empty env var is almost always a mistake. */
export function text<const O extends Common<string> & { type?: string }>(o: O): Setting<Present<O, string>> {
  return <Setting<Present<O, string>>> {
    type: "text",
    ...o,
    parse: (raw) => {
      if (raw.trim() === "") throw new Error("must not be empty");
      return raw.trim();
    },
  };
}

/** An absolute http(s) URL, normalised without a trailing slash. */
export function url<const O extends Common<string>>(o: O): Setting<Present<O, string>> {
  return <Setting<Present<O, string>>> {
    ...o,
    type: "url",
    parse: parseHttpUrl,
  };
}

const REGION_NAME = /^[a-z]{2}(-[a-z]+)+-\d+$/;

/**
 * Whether `name` is shaped like an AWS region name (`eu-west-1`, `us-gov-west-1`, `cn-north-1`): the one
 * check behind every role's region setting, so that a typo fails at start instead of as an unknown host.
 */
export function isRegionName(name: string): boolean {
  return REGION_NAME.test(name);
}

/** An absolute http:// or https:// URL, without its trailing slash; throws naming what was expected. */
export function parseHttpUrl(raw: string): string {
  let parsed: URL;
  try {
    parsed = new URL(raw.trim());
  } catch {
    throw new Error("expected an absolute http:// or https:// URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new Error("expected an absolute http:// or https:// URL");
  }
  return parsed.href.replace(/\/$/, "");
}

/**
 * One of a fixed list, matched case-insensitively. `aliases` maps extra spellings (such as Python's
 * `logging.INFO`) onto a choice.
 */
export function oneOf<const C extends string, const O extends Common<C> = Common<C>>(
  o: O & { choices: readonly C[]; aliases?: Readonly<Record<string, C>> },
): Setting<Present<O, C>> {
  const { choices, aliases = {}, ...rest } = o;
  return <Setting<Present<O, C>>> {
    ...rest,
    type: choices.join("|"),
    parse: (raw) => {
      const key = raw.trim().toLowerCase();
      const match = choices.find((c) => c.toLowerCase() === key) ??
        Object.entries(aliases).find(([alias]) => alias.toLowerCase() === key)?.[1];
      if (match === undefined) throw new Error(`expected one of ${choices.join(", ")}`);
      return match as Present<O, C>;
    },
  };
}

/** An on/off switch: `--flag` on the command line, `true|false|1|0` in the environment. */
export function toggle(o: Common<boolean>): Setting<boolean> {
  return {
    default: false,
    ...o,
    type: "bool",
    isSwitch: true,
    parse: (raw) => {
      const key = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(key)) return true;
      if (["0", "false", "no", "off"].includes(key)) return false;
      throw new Error("expected true or false");
    },
  };
}

/**
 * What settings are parsed from: a command line and an environment.
 *
 * @example
 * ```ts
 * const input: ParseInput = { args: ["--drain-mode", "connections"], env: Deno.env.toObject() };
 * ```
 */
export interface ParseInput {
  /** Flags and positionals, without the binary's name. */
  readonly args: readonly string[];
  /** Environment variables; flags win over them. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/**
 * The result of {@link parseSettings}.
 *
 * @example
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * const parsed: Parsed<typeof nlbSidecar.nlbSidecarSettings> = parseSettings(nlbSidecar.nlbSidecarSettings, {
 *   args: ["health"],
 *   env: { ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/id" },
 * });
 * console.log(parsed.positionals[0], parsed.config.statusFile);
 * ```
 */
export interface Parsed<Spec extends SettingsSpec> {
  /** Every setting's value. */
  readonly config: ConfigOf<Spec>;
  /** Words that are not flags: a role's subcommand, if it has any. */
  readonly positionals: readonly string[];
  /** `--help` or `-h` was given. */
  readonly help: boolean;
  /** `--version` was given. */
  readonly version: boolean;
}

/**
 * The result of {@link checkSettings}: what {@link Parsed} holds, and every problem found.
 *
 * @example Print every problem of a command line, one line each
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * const checked: Checked<typeof nlbSidecar.nlbSidecarSettings> = checkSettings(nlbSidecar.nlbSidecarSettings, {
 *   args: ["--polling-frequency", "soon"],
 *   env: { DRAIN_MODE: "gentle" },
 * });
 * for (const error of checked.errors) console.error(error.message);
 * ```
 */
export interface Checked<Spec extends SettingsSpec> extends Parsed<Spec> {
  /** One per bad flag or setting, in the order of the spec; empty when all is well or `--help`/`--version` asks. */
  readonly errors: readonly ConfigError[];
  /** The keys of the settings that have an error (their `config` value is the default). */
  readonly failed: ReadonlySet<string>;
}

/**
 * Parses flags and env against a spec. Throws the first {@link ConfigError} when any input is bad
 * ({@link checkSettings} lists every one).
 *
 * @example Read the nlb-sidecar's settings as it would at start
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * const { config } = parseSettings(nlbSidecar.nlbSidecarSettings, { args: Deno.args, env: Deno.env.toObject() });
 * console.log(config.drainMode, config.deregistrationWait);
 * ```
 */
export function parseSettings<Spec extends SettingsSpec>(spec: Spec, input: ParseInput): Parsed<Spec> {
  const { errors, failed: _failed, ...parsed } = checkSettings(spec, input);
  if (errors.length > 0) throw errors[0];
  return parsed;
}

type ArgOptions = Record<string, { type: "string" | "boolean"; short?: string }>;

/**
 * Parses flags and env against a spec and collects every problem instead of stopping at the first: each
 * bad flag or value is one {@link ConfigError}, and a setting that has one keeps its default. `--help` and
 * `--version` answer whatever else is wrong, so they report no errors.
 *
 * @example
 * ```ts
 * import { appmeshHelper } from "../mod.ts";
 *
 * const { errors } = checkSettings(appmeshHelper.appmeshHelperSettings, {
 *   args: [],
 *   env: { DRAIN_DELAY: "soon", PORT: "99999" },
 * });
 * console.log(errors.length); // 2
 * ```
 */
export function checkSettings<Spec extends SettingsSpec>(spec: Spec, input: ParseInput): Checked<Spec> {
  const options: ArgOptions = {
    help: { type: "boolean", short: "h" },
    version: { type: "boolean" },
  };
  for (const setting of Object.values(spec)) {
    options[setting.flag] = { type: setting.isSwitch ? "boolean" : "string" };
    if (setting.short) options[setting.flag].short = setting.short;
  }
  // Not strict: node's strict mode stops at the first bad flag. The same checks, for every flag, are below.
  const parsedArgs = parseArgs({ args: [...input.args], options, strict: false, allowPositionals: true, tokens: true });
  const errors: ConfigError[] = [];
  const badFlags = new Set<string>();
  for (const token of parsedArgs.tokens) {
    if (token.kind !== "option") continue;
    const problem = flagProblem(token, options);
    if (problem === undefined) continue;
    errors.push(problem);
    badFlags.add(token.name);
  }
  const flags = parsedArgs.values as Record<string, string | boolean | undefined>;
  const config: Record<string, unknown> = {};
  const failed = new Set<string>();
  for (const [key, setting] of Object.entries(spec)) {
    try {
      // A flag that is itself wrong (`--wait` without a value) has said all there is to say.
      if (!badFlags.has(setting.flag)) {
        config[key] = resolveSetting(setting, flags[setting.flag], input.env);
        continue;
      }
    } catch (error) {
      errors.push(error as ConfigError);
    }
    failed.add(key);
    config[key] = setting.default;
  }
  const help = flags.help === true;
  const version = flags.version === true;
  return {
    config: config as ConfigOf<Spec>,
    positionals: parsedArgs.positionals,
    help,
    version,
    // `--help` and `--version` must answer even when a required setting is missing or another is bad.
    errors: help || version ? [] : errors,
    failed,
  };
}

/**
 * The names an operator may have typed for the settings of `keys` (env, `--flag`, `-s`). A cross-setting
 * check whose error names one of them reports a consequence of that setting's own error, not news.
 */
export function settingNames(spec: SettingsSpec, keys: Iterable<string>): Set<string> {
  const names = new Set<string>();
  for (const key of keys) {
    const setting = spec[key];
    if (setting === undefined) continue;
    if (setting.env) names.add(setting.env);
    names.add(`--${setting.flag}`);
    if (setting.short) names.add(`-${setting.short}`);
  }
  return names;
}

/** Whether `error` names (as a whole word of its setting) one of `names`. */
export function namesAny(error: ConfigError, names: ReadonlySet<string>): boolean {
  return error.setting.split(/[\s(),]+/).some((word) => names.has(word));
}

/** The parts of one of parseArgs' option tokens that say what was typed. */
interface OptionToken {
  readonly name: string;
  readonly rawName: string;
  readonly value?: string;
  readonly inlineValue?: boolean;
}

/** What node's strict mode would reject about one flag, in the words of a configuration error. */
function flagProblem(token: OptionToken, options: ArgOptions): ConfigError | undefined {
  const option = options[token.name];
  const long = `--${token.name}`;
  if (option === undefined) return new ConfigError(token.rawName, undefined, "unknown flag (see --help)");
  if (option.type === "boolean") {
    return token.value === undefined ? undefined : new ConfigError(long, undefined, "is a switch and takes no value");
  }
  if (token.value === undefined) return new ConfigError(long, undefined, "needs a value");
  // As node's strict mode: `--flag -x` is more likely a forgotten value than a value starting with `-`.
  if (!token.inlineValue && token.value.length > 1 && token.value.startsWith("-")) {
    return new ConfigError(long, undefined, `needs a value (write ${long}=VALUE for one starting with -)`);
  }
  return undefined;
}

function resolveSetting<T>(
  setting: Setting<T>,
  flagValue: string | boolean | undefined,
  env: ParseInput["env"],
): T | undefined {
  if (typeof flagValue === "boolean") return flagValue as T;
  const fromEnv = setting.env === undefined ? undefined : env[setting.env];
  const [name, raw] = flagValue !== undefined
    ? [`--${setting.flag}`, flagValue]
    : [setting.env ?? `--${setting.flag}`, fromEnv];
  if (raw === undefined || (flagValue === undefined && raw === "" && !setting.required)) {
    if (setting.required) {
      const where = setting.env ? `${setting.env} (or --${setting.flag})` : `--${setting.flag}`;
      throw new ConfigError(where, undefined, "is required");
    }
    return setting.default;
  }
  try {
    return setting.parse(raw);
  } catch (error) {
    throw new ConfigError(name, raw, (error as Error).message);
  }
}

/** One row per setting, for `--help` and the README's generated settings tables. */
export interface SettingRow {
  readonly env: string;
  readonly flag: string;
  readonly type: string;
  /** The values accepted beyond the type (`>= 1 s`), or empty. */
  readonly bounds: string;
  readonly defaultText: string;
  readonly help: string;
}

export function settingRows(spec: SettingsSpec): SettingRow[] {
  return Object.values(spec).map((s) => ({
    env: s.env ?? "",
    flag: (s.short ? `-${s.short}, ` : "") + `--${s.flag}`,
    type: s.type,
    bounds: s.bounds ?? "",
    defaultText: s.required ? "(required)" : s.default === undefined ? "(unset)" : String(s.default),
    help: s.help,
  }));
}

/** The narrowest help that is still readable: on a narrower terminal lines run over rather than break up. */
const MIN_HELP_WIDTH = 40;

/**
 * `line` broken at spaces into lines of at most `width` columns where the words allow. Its head (the
 * indent, and a leading name set off by two spaces, as in `  health  exit 0 ...`) is kept as written, and
 * continuation lines start under the text after it, or at `indent` columns when given. A word longer than
 * the width stays whole on a line of its own.
 */
export function wrapLine(line: string, width: number, indent?: number): string[] {
  const head = line.match(/^ *(?:\S+ {2,}(?=\S))?/)![0];
  const words = line.slice(head.length).split(/ +/).filter((word) => word !== "");
  const lines: string[] = [];
  let current = head;
  let empty = true;
  for (const word of words) {
    if (!empty && current.length + 1 + word.length > width) {
      lines.push(current);
      current = " ".repeat(indent ?? head.length) + word;
    } else {
      current += (empty ? "" : " ") + word;
    }
    empty = false;
  }
  lines.push(current);
  return lines;
}

/** Groups of words kept on one line when they fit, each group starting a new line when they do not. */
function wrapSegments(segments: readonly string[], width: number, lead: number, indent: number): string[] {
  const lines: string[] = [];
  let current = " ".repeat(lead);
  for (const segment of segments) {
    const atStart = current.trim() === "";
    if (!atStart && current.length + 2 + segment.length > width) {
      lines.push(current);
      current = " ".repeat(indent) + segment;
    } else {
      current += (atStart ? "" : "  ") + segment;
    }
  }
  lines.push(current);
  return lines;
}

/**
 * Plain-text help: usage line, then every setting with its flag, env name, default and the values it
 * accepts, wrapped to `width` columns (the terminal's; the runner passes 80 when stdout is not one).
 */
export function renderHelp(
  usage: string,
  summary: string,
  spec: SettingsSpec,
  extra = "",
  width = 80,
): string {
  const columns = Math.max(width, MIN_HELP_WIDTH);
  const lines = [
    ...wrapLine(`usage: ${usage}`, columns, 7),
    "",
    ...wrapLine(summary, columns, 0),
    "",
    "settings (flags override environment):",
  ];
  for (const row of settingRows(spec)) {
    const segments = [
      `${row.flag}${row.type === "bool" ? "" : ` <${row.type}>`}`,
      ...(row.env ? [`env ${row.env}`] : []),
      `default ${row.defaultText}`,
      ...(row.bounds ? [`(${row.bounds})`] : []),
    ];
    lines.push(...wrapSegments(segments, columns, 2, 6));
    lines.push(...wrapLine(`      ${row.help}`, columns, 6));
  }
  lines.push("  -h, --help  show this help", "  --version  print the version");
  if (extra) {
    lines.push("");
    for (const line of extra.trimEnd().split("\n")) lines.push(...wrapLine(line, columns));
  }
  return lines.join("\n") + "\n";
}
