/**
 * Elapsed time as the log lines give it (`waitedSeconds`), shared by the startup and shutdown stages.
 * @module
 */

/** Seconds since the epoch-ms `epochMs`, to the millisecond. */
export function secondsSince(epochMs: number): number {
  return (Date.now() - epochMs) / 1000;
}
