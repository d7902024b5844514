/**
 * A role process from start to exit: settings, logging, SIGTERM/SIGINT as an AbortSignal, and one exit
 * code per outcome. Roles implement {@link RoleProgram}; `cmd/<role>.ts` only calls {@link runRole}.
 * @module
 */
import {
  checkSettings,
  ConfigError,
  type ConfigOf,
  namesAny,
  renderHelp,
  type Setting,
  settingNames,
  type SettingsSpec,
} from "./config.ts";
import {
  closeLogging,
  type Level,
  type LogFormat,
  type Logger,
  type RotatingFile,
  rotatingFileSink,
  setupLogging,
} from "./log.ts";
import type { RoleInfo } from "./roles.ts";
import { VERSION } from "./version.ts";

/**
 * Exit codes shared by every role; a role documents any of its own above these.
 *
 * @example Tell a configuration error from a runtime failure
 * ```ts
 * import { nlbSidecar, runRole } from "../mod.ts";
 *
 * const code = await runRole(nlbSidecar.nlbSidecarProgram, { args: ["--polling-frequency", "soon"] });
 * if (code === ExitCode.Config) console.error("fix the settings; nothing was done");
 * ```
 */
export const ExitCode = {
  /** Finished as designed: drained, shut down on a signal, or a subcommand that succeeded. */
  Ok: 0,
  /** A runtime failure the role could not ride out (or a `health` check that says unhealthy). */
  Failure: 1,
  /** Bad settings: the message on stderr names the setting. Nothing was done. */
  Config: 2,
} as const;

/** What each shared exit code means, in the few words of `--help`; keyed by name so none is left out. */
const EXIT_CODE_MEANINGS: { readonly [Name in keyof typeof ExitCode]: string } = {
  Ok: "done",
  Failure: "runtime failure (or unhealthy)",
  Config: "configuration error",
};

/** `exit codes: 0 done, 1 ...`, built from {@link ExitCode}. */
function exitCodesLine(): string {
  const names = Object.keys(ExitCode) as (keyof typeof ExitCode)[];
  return `exit codes: ${names.map((name) => `${ExitCode[name]} ${EXIT_CODE_MEANINGS[name]}`).join(", ")}`;
}

/**
 * The signals that ask a role to shut down.
 *
 * @example
 * ```ts
 * const first: ShutdownSignalName = "SIGTERM";
 * ```
 */
export type ShutdownSignalName = "SIGTERM" | "SIGINT";

/**
 * SIGTERM and SIGINT, turned into an AbortSignal that fires on the first one.
 *
 * @example Stop a loop on the first signal
 * ```ts
 * using shutdown = new Shutdown();
 * shutdown.onSignal((name, count) => console.log(`${name}, signal number ${count}`));
 * while (!shutdown.signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1_000));
 * ```
 */
export class Shutdown implements Disposable {
  readonly #controller = new AbortController();
  readonly #listeners: Array<(name: ShutdownSignalName, count: number) => void> = [];
  readonly #handlers = new Map<ShutdownSignalName, () => void>();
  #count = 0;

  /** Listens for `names` until disposed. */
  constructor(names: readonly ShutdownSignalName[] = ["SIGTERM", "SIGINT"]) {
    for (const name of names) {
      const handler = () => this.trigger(name);
      this.#handlers.set(name, handler);
      Deno.addSignalListener(name, handler);
    }
  }

  /** Aborts on the first signal; the reason is the signal's name. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** How many shutdown signals have arrived. */
  get count(): number {
    return this.#count;
  }

  /** Calls `listener` for every signal, the first included. */
  onSignal(listener: (name: ShutdownSignalName, count: number) => void): void {
    this.#listeners.push(listener);
  }

  /** What a signal does; public so that tests and embedders can request a shutdown. */
  trigger(name: ShutdownSignalName): void {
    this.#count++;
    if (!this.#controller.signal.aborted) this.#controller.abort(name);
    for (const listener of this.#listeners) listener(name, this.#count);
  }

  /** Stops listening for the signals. */
  [Symbol.dispose](): void {
    for (const [name, handler] of this.#handlers) Deno.removeSignalListener(name, handler);
    this.#handlers.clear();
  }
}

/**
 * The settings every role has, so the runner can set up logging before the role starts.
 *
 * @example Every role's settings include them
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * const logging: LoggingSettings = nlbSidecar.nlbSidecarSettings;
 * console.log(logging.logLevel.env, logging.logFormat.default);
 * ```
 */
export interface LoggingSettings extends SettingsSpec {
  /** `LOG_LEVEL`: the least severe level that is logged. */
  logLevel: Setting<Level>;
  /** `LOG_FORMAT`: JSON lines or text. */
  logFormat: Setting<LogFormat>;
}

/**
 * What {@link runRole} hands a role's {@link RoleProgram.run}: its parsed settings, its logger and the
 * shutdown signal.
 *
 * @example A run that waits for SIGTERM
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * async function run(context: RoleContext<typeof nlbSidecar.nlbSidecarSettings>): Promise<number> {
 *   context.log.info("waiting {seconds} s at most", { seconds: context.config.deregistrationWait });
 *   await new Promise((resolve) => context.shutdown.signal.addEventListener("abort", resolve));
 *   return ExitCode.Ok;
 * }
 * ```
 */
export interface RoleContext<Spec extends LoggingSettings> {
  /** The parsed settings. */
  readonly config: ConfigOf<Spec>;
  /** The subcommand (`health`, `status`, ...) or `undefined` for the daemon itself. */
  readonly subcommand: string | undefined;
  /** The role's logger, set up from `logLevel` and `logFormat`. */
  readonly log: Logger;
  /** Aborts on the first SIGTERM or SIGINT (or {@link RunOptions.stop}). */
  readonly shutdown: Shutdown;
  /** The environment the settings were read from. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/**
 * A role as {@link runRole} runs it: who it is, its settings, its checks and its daemon.
 *
 * @example List what a role's binary offers
 * ```ts
 * import { networkSentry } from "../mod.ts";
 *
 * const program: RoleProgram<typeof networkSentry.networkSentrySettings> = networkSentry.networkSentryProgram;
 * console.log(program.info.binary, Object.keys(program.subcommands ?? {}), Object.keys(program.spec));
 * ```
 */
export interface RoleProgram<Spec extends LoggingSettings> {
  /** Name, binary, entry, permissions. */
  readonly info: RoleInfo;
  /** Every setting, declared once. */
  readonly spec: Spec;
  /** Subcommand name -> one line of help. */
  readonly subcommands?: Readonly<Record<string, string>>;
  /** Exit codes beyond the shared ones, and any other closing words for `--help`. */
  readonly helpExtra?: string;
  /**
   * Checks across settings: one {@link ConfigError} per problem, all of them (an empty list when all is
   * well). A setting whose own value was bad holds its default here; errors that name it are dropped.
   */
  validate?(
    config: ConfigOf<Spec>,
    env: Readonly<Record<string, string | undefined>>,
    subcommand?: string,
  ): readonly ConfigError[];
  /** A rotating log file besides stdout, when the role keeps one. */
  logFile?(config: ConfigOf<Spec>, subcommand?: string): RotatingFile | undefined;
  /** The daemon or the subcommand; resolves to the exit code. */
  run(context: RoleContext<Spec>): Promise<number>;
}

/** `--help` text for a role, wrapped to `width` columns. */
export function roleHelp<Spec extends LoggingSettings>(program: RoleProgram<Spec>, width = 80): string {
  const subcommands = Object.entries(program.subcommands ?? {});
  const usage = `${program.info.binary}${
    subcommands.length ? ` [${subcommands.map(([n]) => n).join("|")}]` : ""
  } [flags]`;
  const lines = subcommands.map(([name, help]) => `  ${name}  ${help}`);
  const extra = [
    ...(lines.length ? ["subcommands:", ...lines, ""] : []),
    exitCodesLine(),
    program.helpExtra ?? "",
  ].join("\n");
  return renderHelp(usage, program.info.summary, program.spec, extra, width);
}

const SECRET_IN_URL = /\/\/[^/@\s]+@/;

/** Settings as they are logged at start: credentials inside URLs are masked. */
export function loggableSettings(config: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    out[key] = typeof value === "string" ? value.replace(SECRET_IN_URL, "//***@") : value;
  }
  return out;
}

/**
 * Where {@link runRole} reads its input and writes its output; every field defaults to the process's own.
 *
 * @example Run a subcommand with chosen input and capture what it prints
 * ```ts
 * import { nlbSidecar } from "../mod.ts";
 *
 * let printed = "";
 * const options: RunOptions = {
 *   args: ["health"],
 *   env: { ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/id" },
 *   print: (text) => printed += text,
 *   logWrite: (line) => printed += line,
 * };
 * const code = await runRole(nlbSidecar.nlbSidecarProgram, options);
 * ```
 */
export interface RunOptions {
  /** The command line after the binary's name; default `Deno.args`. */
  readonly args?: readonly string[];
  /** The environment; default the process's. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Where `--help`, `--version` and configuration errors are printed. */
  readonly print?: (text: string, stream: "stdout" | "stderr") => void;
  /** Where log lines go instead of stdout (tests, the demo's narration). */
  readonly logWrite?: (line: string) => void;
  /** Ends the run as SIGTERM would; for embedders that run a role in-process. */
  readonly stop?: AbortSignal;
  /** Columns `--help` wraps to; default the terminal's width, 80 when stdout is not a terminal. */
  readonly helpWidth?: number;
}

/** The terminal's width when stdout is one, else 80: help piped into a file or a pager reads the same everywhere. */
function terminalColumns(): number {
  try {
    if (Deno.stdout.isTerminal()) return Deno.consoleSize().columns;
  } catch {
    // no console size to be had: the default below
  }
  return 80;
}

function printTo(text: string, stream: "stdout" | "stderr"): void {
  const bytes = new TextEncoder().encode(text);
  (stream === "stdout" ? Deno.stdout : Deno.stderr).writeSync(bytes);
}

/**
 * Parses settings, sets up logging and signals, runs the role, and returns its exit code. Never throws:
 * configuration errors give 2 and unexpected errors are logged and give 1.
 *
 * @example A role embedded in a larger program, stopped by it
 * ```ts
 * import { appmeshHelper } from "../mod.ts";
 *
 * const stop = new AbortController();
 * const running = runRole(appmeshHelper.appmeshHelperProgram, { args: [], stop: stop.signal });
 * stop.abort();
 * console.log("appmesh-helper exited", await running);
 * ```
 */
export async function runRole<Spec extends LoggingSettings>(
  program: RoleProgram<Spec>,
  options: RunOptions = {},
): Promise<number> {
  // Signals are taken first: a SIGTERM that lands while the settings are read or logging starts must
  // still end the role with 0, not with the default action's 143.
  using shutdown = new Shutdown();
  options.stop?.addEventListener("abort", () => shutdown.trigger("SIGTERM"), { once: true });
  const args = options.args ?? Deno.args;
  const env = options.env ?? Deno.env.toObject();
  const print = options.print ?? printTo;
  let context: Omit<RoleContext<Spec>, "log" | "shutdown">;
  let file: RotatingFile | undefined;
  const configErrors = (errors: readonly ConfigError[]) => {
    for (const error of errors) print(`${program.info.binary}: configuration error: ${error.message}\n`, "stderr");
    return ExitCode.Config;
  };
  try {
    const parsed = checkSettings(program.spec, { args, env });
    if (parsed.help) {
      print(roleHelp(program, options.helpWidth ?? terminalColumns()), "stdout");
      return ExitCode.Ok;
    }
    if (parsed.version) {
      print(`${program.info.binary} ${VERSION}\n`, "stdout");
      return ExitCode.Ok;
    }
    const errors = [...parsed.errors];
    const [subcommand, ...extra] = parsed.positionals;
    const known = subcommand === undefined || subcommand in (program.subcommands ?? {});
    if (!known) errors.push(new ConfigError(subcommand, undefined, "unknown subcommand (see --help)"));
    for (const word of extra) errors.push(new ConfigError(word, undefined, "unexpected argument (see --help)"));
    // Checks across settings run on what parsed; a bad setting's consequences are not reported twice.
    const failedNames = settingNames(program.spec, parsed.failed);
    const crossChecks = program.validate?.(parsed.config, env, subcommand) ?? [];
    errors.push(...crossChecks.filter((error) => !namesAny(error, failedNames)));
    if (errors.length > 0) return configErrors(errors);
    file = program.logFile?.(parsed.config, subcommand);
    context = { config: parsed.config, subcommand, env };
  } catch (error) {
    if (error instanceof ConfigError) return configErrors([error]);
    print(
      `${program.info.binary}: unexpected error while reading settings: ${(error as Error)?.stack ?? error}\n`,
      "stderr",
    );
    return ExitCode.Failure;
  }
  let log: Logger;
  try {
    log = setupLogging({
      role: program.info.name,
      level: context.config.logLevel,
      format: context.config.logFormat,
      fileSink: file && await rotatingFileSink(file),
      write: options.logWrite,
    });
  } catch (error) {
    print(`${program.info.binary}: configuration error: cannot open log file: ${(error as Error).message}\n`, "stderr");
    return ExitCode.Config;
  }
  try {
    if (context.subcommand === undefined) {
      log.info("starting {binary} {version}", {
        binary: program.info.binary,
        version: VERSION,
        settings: loggableSettings(context.config),
      });
    }
    return await program.run({ ...context, log, shutdown });
  } catch (error) {
    // A setting only the run can check (a file it reads once to use it) fails as any bad setting does.
    if (error instanceof ConfigError) return configErrors([error]);
    log.fatal("stopped by an unexpected error: {error}", {
      error: (error as Error)?.message ?? String(error),
      stack: (error as Error)?.stack,
    });
    return ExitCode.Failure;
  } finally {
    closeLogging();
  }
}

/**
 * Gives up, for the rest of the process, the two permissions that would let compromised code escape the
 * runtime: starting programs and loading native libraries. The nlb-sidecar and the network sentry are
 * built with every permission because Deno opens files under /proc only for such a process; each calls
 * this once what it needs from /proc is open or read.
 */
export function dropEscalatingPermissions(): void {
  Deno.permissions.revokeSync({ name: "run" });
  Deno.permissions.revokeSync({ name: "ffi" });
}
