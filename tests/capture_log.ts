/** A role's logger whose JSON lines a test reads back, for the tests that drive a role's loop in-process. */
import { type Logger, setupLogging } from "../lib/log.ts";
import type { RoleName } from "../lib/roles.ts";

export interface CapturedLog {
  readonly log: Logger;
  /** Parsed JSON lines, in order. */
  readonly lines: Array<Record<string, unknown>>;
}

/** Configures logging (process-wide, as a role does) to capture `role`'s lines at debug level. */
export function captureLog(role: RoleName = "nlb-sidecar"): CapturedLog {
  const lines: Array<Record<string, unknown>> = [];
  const log = setupLogging({
    role,
    level: "debug",
    format: "json",
    write: (line) => lines.push(JSON.parse(line)),
  });
  return { log, lines };
}
