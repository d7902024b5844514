/**
 * Wall clocks that step, as NTP or chrony step a host's clock (chrony's `makestep`, in Debian's default
 * configuration, steps it whenever the first updates after a start find it more than a second off), as a
 * resumed VM or a clock fixed by hand does. Only the wall clock moves: clock_gettime(2) says CLOCK_REALTIME
 * "is affected by discontinuous jumps in the system time", CLOCK_MONOTONIC and CLOCK_BOOTTIME are not.
 *
 * - {@link steppableWallClock}: this process's `Date.now`, for tests that drive a loop in-process.
 * - {@link fakedWallClock}: a role's own process, through libfaketime (Debian's `libfaketime`, 0.9.10),
 *   preloaded with `FAKETIME_DONT_FAKE_MONOTONIC=1` so that only CLOCK_REALTIME is faked. The offset is read
 *   from `FAKETIME_TIMESTAMP_FILE` at every call (`FAKETIME_NO_CACHE=1`; cached, a change takes up to 10 s),
 *   so the test steps the clock of a running process by rewriting that file. Measured with Deno 2.9: `Date.now`
 *   follows the file within the call after the write, `performance.now`, timers and /proc/uptime do not, and a
 *   `Date.now` costs 10 us instead of 0.1 (tests/lib/wall_clock_test.ts checks the first two on every run).
 * @module
 */
import { writeFileAtomic } from "../lib/atomic_file.ts";

/** Replaces this process's `Date.now` with the real clock plus an offset the test steps; restored on dispose. */
export function steppableWallClock(): Disposable & { step(ms: number): void } {
  const real = Date.now;
  let offsetMs = 0;
  Date.now = () => real() + offsetMs;
  return {
    step(ms: number) {
      offsetMs += ms;
    },
    [Symbol.dispose]() {
      Date.now = real;
    },
  };
}

/** A role process's wall clock, stepped from the test while the role runs. */
export interface FakedWallClock extends AsyncDisposable {
  /** For `spawnRole`'s `env`: the preload and libfaketime's settings. */
  readonly env: Readonly<Record<string, string>>;
  /** Where the faked clock is now against the real one, in whole seconds. */
  readonly offsetSeconds: number;
  /** The faked wall clock as the role reads it, in ms since the epoch: what peers on the same host read too. */
  now(): number;
  /** Moves the faked clock by `seconds` (either way); the role's next reading of the wall clock sees it. */
  step(seconds: number): Promise<void>;
}

/** Where Debian's `libfaketime` package puts the preload library (a multiarch path), or where `make install` does. */
function libfaketimeCandidates(): string[] {
  return [
    `/usr/lib/${Deno.build.arch}-linux-gnu/faketime/libfaketime.so.1`,
    "/usr/local/lib/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
  ];
}

/** The preload library, or `undefined` where none is installed. */
export function findLibfaketime(): string | undefined {
  return libfaketimeCandidates().find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * The library for a test file, or `undefined` (with a printed reason) where it is missing. With
 * `REQUIRE_FAKETIME=1` (as in CI, which installs Debian's `faketime`) a missing library is an error instead,
 * so CI cannot silently skip the clock-step tests.
 */
export function libfaketimeForTests(): string | undefined {
  const found = findLibfaketime();
  if (found !== undefined) return found;
  const reason = `libfaketime is not installed (looked for ${libfaketimeCandidates().join(", ")}; ` +
    "Debian: apt-get install faketime)";
  if (Deno.env.get("REQUIRE_FAKETIME") === "1") throw new Error(`REQUIRE_FAKETIME=1 but ${reason}`);
  console.warn(`skipping the wall-clock step tests: ${reason} (set REQUIRE_FAKETIME=1 to make this an error)`);
  return undefined;
}

/**
 * A faked wall clock `initialOffsetSeconds` away from the real one, for one role process. Certificates made
 * by `createTestCa` are valid from the moment they were made, as a real one issued that moment is: a role
 * whose clock goes back before then fails TLS, so tests that step back start the role ahead of the real clock.
 */
export async function fakedWallClock(library: string, initialOffsetSeconds = 0): Promise<FakedWallClock> {
  const dir = await Deno.makeTempDir({ prefix: "faked-wall-clock-" });
  const file = `${dir}/faketimerc`;
  let offsetSeconds = initialOffsetSeconds;
  // Replaced by rename: libfaketime re-reads the file at every call and must never see it half written.
  const write = () => writeFileAtomic(file, `${offsetSeconds >= 0 ? "+" : ""}${offsetSeconds}\n`, 0o644);
  await write();
  return {
    env: {
      LD_PRELOAD: library,
      FAKETIME_TIMESTAMP_FILE: file,
      FAKETIME_NO_CACHE: "1",
      FAKETIME_DONT_FAKE_MONOTONIC: "1",
    },
    get offsetSeconds() {
      return offsetSeconds;
    },
    now: () => Date.now() + offsetSeconds * 1000,
    async step(seconds: number) {
      offsetSeconds += seconds;
      await write();
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}
