/**
 * Elapsed time as the log lines give it (`waitedSeconds`), shared by the startup and shutdown stages.
 * @module
 */
import { monotonicNow } from "../clock.ts";

/** Seconds since `startMs` on {@link monotonicNow}'s clock, to the millisecond: a wall-clock step changes none. */
export function secondsSince(startMs: number): number {
  return Math.round(monotonicNow() - startMs) / 1000;
}
