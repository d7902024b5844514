/**
 * Logging on LogTape: JSON lines on stdout by default (CloudWatch-friendly), a text format for people,
 * and an optional rotating file. Writes are synchronous so nothing is lost when a role exits at once.
 * @module
 */
import {
  configureSync,
  disposeSync,
  getLogger,
  type Logger as LogTapeLogger,
  type LogLevel,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";
import { oneOf } from "./config.ts";

/**
 * What a role logs through. `message` names properties in braces (`{seconds}`); `properties` fills them
 * and each entry is also a field of the JSON line. LogTape's logger is one.
 *
 * @example
 * ```ts
 * function reportDrained(log: Logger, seconds: number): void {
 *   log.info("drained after {seconds} s", { seconds });
 * }
 * ```
 */
export interface Logger {
  /** Detail for following a decision; logged only at `LOG_LEVEL=debug`. */
  debug(message: string, properties?: Record<string, unknown>): void;
  /** A step of the role's normal course. */
  info(message: string, properties?: Record<string, unknown>): void;
  /** Something failed that the role rides out (retried, or a safe default taken). */
  warning(message: string, properties?: Record<string, unknown>): void;
  /** Something failed that the role cannot repair itself. */
  error(message: string, properties?: Record<string, unknown>): void;
  /** The reason the role stops. */
  fatal(message: string, properties?: Record<string, unknown>): void;
}

/**
 * `LOG_FORMAT`: `json` lines for log pipelines, `text` (the eINS layout) for people.
 *
 * @example
 * ```ts
 * const format: LogFormat = Deno.stdout.isTerminal() ? "text" : "json";
 * ```
 */
export type LogFormat = "json" | "text";
/**
 * `LOG_LEVEL`: the least severe level that is logged.
 *
 * @example
 * ```ts
 * const level: Level = "warning";
 * ```
 */
export type Level = "debug" | "info" | "warning" | "error";

/**
 * `LOG_LEVEL`; Python's names (`WARN`, `CRITICAL`, `logging.INFO`, and `NOTSET`, which logs everything)
 * are accepted for the sentry's sake.
 */
export function logLevelSetting(o: { env?: string; flag?: string; short?: string; default?: Level } = {}) {
  return oneOf({
    env: "env" in o ? o.env : "LOG_LEVEL",
    flag: o.flag ?? "log-level",
    short: o.short,
    default: o.default ?? "info",
    help: "Least severe level that is logged.",
    choices: ["debug", "info", "warning", "error"],
    aliases: {
      warn: "warning",
      critical: "error",
      fatal: "error",
      notset: "debug",
      "logging.notset": "debug",
      "logging.debug": "debug",
      "logging.info": "info",
      "logging.warning": "warning",
      "logging.warn": "warning",
      "logging.error": "error",
      "logging.critical": "error",
    },
  });
}

/** `LOG_FORMAT`: `json` lines for log pipelines, `text` for people at a terminal. */
export function logFormatSetting(o: { env?: string; default?: LogFormat } = {}) {
  return oneOf({
    env: "env" in o ? o.env : "LOG_FORMAT",
    flag: "log-format",
    default: o.default ?? "json",
    help: "json: one JSON object per line; text: human-readable lines.",
    choices: ["json", "text"],
  });
}

/**
 * A log file besides stdout that is rotated by size, as the network sentry keeps one.
 *
 * @example The network sentry's default
 * ```ts
 * const file: RotatingFile = {
 *   path: "/tmp/ecs-external-instance-network-sentry.log",
 *   maxBytes: 5 * 1024 * 1024,
 *   maxFiles: 5,
 * };
 * ```
 */
export interface RotatingFile {
  /** The live file; rotated ones get `.1`, `.2`, ... appended. */
  readonly path: string;
  /** Size at which the live file is rotated. */
  readonly maxBytes: number;
  /** Rotated files kept besides the live one (`.1` newest): Python's `backupCount`, as eINS used it. */
  readonly maxFiles: number;
}

export interface LoggingOptions {
  readonly role: string;
  readonly level: Level;
  readonly format: LogFormat;
  /** Also write to this sink: the network sentry's {@link rotatingFileSink}, like the original eINS. */
  readonly fileSink?: Sink;
  /** Where stdout lines go; tests capture them here. */
  readonly write?: (line: string) => void;
}

const encoder = new TextEncoder();

function writeStdout(line: string): void {
  const bytes = encoder.encode(line);
  let offset = 0;
  while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
}

function renderMessage(record: LogRecord): string {
  return record.message.map((part, i) => i % 2 === 0 ? String(part) : renderValue(part)).join("");
}

function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  return JSON.stringify(value) ?? String(value);
}

function plainProperties(properties: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(properties)) {
    if (value === undefined) continue;
    out[key] = value instanceof Error ? { name: value.name, message: value.message } : value;
  }
  return out;
}

/** `{"time","level","role","message",...fields}`: the record's properties become top-level fields. */
export function jsonLine(role: string, record: LogRecord): string {
  const line: Record<string, unknown> = {
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    role,
    message: renderMessage(record),
  };
  // A property named like a core field (`message`, `level`) is kept beside it, never in its place.
  for (const [key, value] of Object.entries(plainProperties(record.properties))) {
    line[key in line ? `${key}_field` : key] = value;
  }
  return JSON.stringify(line) + "\n";
}

/** `2026-11-22 09:00:01,200 INFO PID_42 message key=value`: the eINS layout, so old log searches match. */
export function textLine(record: LogRecord): string {
  const stamp = new Date(record.timestamp).toISOString().replace("T", " ").replace("Z", "").replace(".", ",");
  const fields = Object.entries(plainProperties(record.properties))
    .map(([key, value]) => `${key}=${renderValue(value)}`)
    .join(" ");
  const level = record.level === "warning" ? "WARNING" : record.level.toUpperCase();
  return `${stamp} ${level} PID_${Deno.pid} ${renderMessage(record)}${fields ? " " + fields : ""}\n`;
}

/**
 * A sink writing eINS-style text lines to a rotating file, as Python's RotatingFileHandler does: the live
 * file plus `maxFiles` older ones (`.1` the newest). The module is loaded only here, when a file is wanted:
 * loading it costs a sidecar about 6 MiB of resident memory.
 */
export async function rotatingFileSink(file: RotatingFile): Promise<Sink & Disposable> {
  const { getRotatingFileSink } = await import("@logtape/file");
  // bufferSize 0: every line reaches the file before the next step, so a SIGKILL loses nothing.
  return getRotatingFileSink(file.path, {
    maxSize: file.maxBytes,
    maxFiles: file.maxFiles,
    bufferSize: 0,
    formatter: textLine,
  });
}

/** Configures LogTape for one role process. Call {@link closeLogging} before exiting. */
export function setupLogging(options: LoggingOptions): LogTapeLogger {
  const write = options.write ?? writeStdout;
  const format = options.format === "json" ? (record: LogRecord) => jsonLine(options.role, record) : textLine;
  const sinks: Record<string, Sink> = { stdout: (record) => write(format(record)) };
  if (options.fileSink) sinks.file = options.fileSink;
  configureSync({
    reset: true,
    sinks,
    loggers: [
      { category: [options.role], lowestLevel: options.level as LogLevel, sinks: Object.keys(sinks) },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: ["stdout"] },
    ],
  });
  return getLogger([options.role]);
}

/** Flushes and closes every sink (the rotating file especially). Safe to call twice. */
export function closeLogging(): void {
  disposeSync();
}
