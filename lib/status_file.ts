/**
 * The status file a daemon keeps fresh so that its `health` subcommand, run by ECS as the container's
 * `healthCheck` in an image without a shell, can answer from another process.
 * @module
 */
import { readJsonFile, writeFileAtomic } from "./atomic_file.ts";

export interface Status {
  readonly role: string;
  readonly pid: number;
  /** Milliseconds since the epoch when the daemon last wrote this file. */
  readonly updatedAt: number;
  /** Role-defined state name, e.g. `watching` or `draining`. */
  readonly state: string;
  /** Role-defined facts the health rule needs (last successful poll, interval, ...). */
  readonly details: Readonly<Record<string, unknown>>;
}

export function writeStatus(path: string, status: Status): Promise<void> {
  return writeFileAtomic(path, JSON.stringify(status) + "\n");
}

export function readStatus(path: string): Promise<Status | undefined> {
  return readJsonFile<Status>(path);
}
