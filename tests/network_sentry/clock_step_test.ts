/**
 * The sentry as its own process with its wall clock stepped an hour either way (libfaketime, monotonic
 * clock untouched): in the middle of a probe tick (while Docker is being read), during the pause between
 * ticks, and between two `--once` runs that resume probe streaks from the status file. Probes are timed by
 * the endpoint emulator on its monotonic clock; the bounds allow a loaded machine seconds of lateness, which
 * an hour's step overshoots by far. Docker is the read-only API emulator: the region answers throughout (or,
 * for the streaks, never), so nothing is changed on the host.
 */
import assert from "node:assert/strict";
import { readStatus } from "../../lib/status_file.ts";
import { statusFileFor } from "../../lib/network_sentry/sentry.ts";
import { ecsLabels, type FakeContainer, runningContainer, startDockerApiEmulator } from "../../sim/docker_api.ts";
import { createTestCa, startRegionEndpoint } from "../../sim/region_endpoint.ts";
import { type LogEntry, runRoleToEnd, spawnRole } from "../../sim/role_process.ts";
import { waitUntil } from "../../sim/wait.ts";
import { fakedWallClock, libfaketimeForTests } from "../../sim/wall_clock.ts";

const library = libfaketimeForTests();
const HOUR_SECONDS = 3_600;
const INTERVAL_SECONDS = 2;
/** Lateness a loaded 2-core machine may add to a pause. */
const SLACK_SECONDS = 5;
/**
 * The emulator's certificates are valid from the moment they were made: the sentry's clock starts two hours
 * ahead, so that a step back still finds them valid (as any real certificate older than an hour would be).
 */
const AHEAD_SECONDS = 2 * HOUR_SECONDS;

const dir = library === undefined ? "" : await Deno.makeTempDir({ prefix: "sentry-clock-" });
const ca = library === undefined ? undefined : await createTestCa(dir);
if (library !== undefined) Deno.test.afterAll(() => Deno.remove(dir, { recursive: true }));

function containers(): FakeContainer[] {
  const started = new Date().toISOString();
  return [
    runningContainer("a1", "ecs-agent", {}, started),
    runningContainer("b2", "web", ecsLabels("clock", "web", "web"), started),
  ];
}

const pauses = (logs: readonly LogEntry[]) =>
  logs.filter((l) => l.message.startsWith("[end] sleeping for")).map((l) => Number(l.seconds));

let caseNumber = 0;

/** A sentry probing every INTERVAL_SECONDS on a faked clock, the emulators, and a hook into its Docker reads. */
async function sentryOnFakedClock() {
  const folder = `${dir}/case-${caseNumber++}`;
  await Deno.mkdir(folder);
  const clock = await fakedWallClock(library!, AHEAD_SECONDS);
  const region = startRegionEndpoint(ca!);
  let duringDockerRead: (() => Promise<void>) | undefined;
  const docker = await startDockerApiEmulator(containers(), {
    async beforeAnswer(request) {
      if (request.path !== "/containers/json" || duringDockerRead === undefined) return;
      const act = duringDockerRead;
      duringDockerRead = undefined;
      await act();
    },
  });
  const sentry = spawnRole("network-sentry", {
    env: clock.env,
    args: [
      "--region=eu-test-1",
      `--endpoint=${region.url}`,
      `--ca-file=${ca!.caFile}`,
      `--interval=${INTERVAL_SECONDS}`,
      "--timeout=2",
      `--docker-host=${docker.host}`,
      `--state-file=${folder}/state.json`,
      `--logfile=${folder}/sentry.log`,
    ],
  });
  const probes = () => region.calls.records.filter((r) => r.operation === "ListClusters").map((r) => r.at);
  return {
    clock,
    sentry,
    probes,
    /** Runs `act` while the sentry waits for Docker's container list in its next tick; resolves once it ran. */
    inNextDockerRead(act: () => Promise<void>): Promise<void> {
      return new Promise((resolve) => {
        duringDockerRead = async () => {
          await act();
          resolve();
        };
      });
    },
    /** Waits until the sentry has logged `count` pauses. */
    async pausesLogged(count: number): Promise<number[]> {
      await waitUntil(`${count} pauses logged`, () => pauses(sentry.logs).length >= count, 30_000);
      return pauses(sentry.logs);
    },
    async [Symbol.asyncDispose]() {
      await sentry[Symbol.asyncDispose]();
      await docker.close();
      await region.close();
      await clock[Symbol.asyncDispose]();
    },
  };
}

/** The time from one probe to the next, seconds, once the next has arrived (or failing after the slack). */
async function gapAfter(probes: () => number[], index: number, bound: number): Promise<number> {
  await waitUntil(`probe ${index + 1} within ${bound} s`, () => probes().length > index + 1, bound * 1000);
  return (probes()[index + 1] - probes()[index]) / 1000;
}

for (const stepSeconds of [-HOUR_SECONDS, HOUR_SECONDS]) {
  const direction = stepSeconds < 0 ? "back" : "forward";

  Deno.test({
    name: `clock step: the wall clock stepping an hour ${direction} during a probe tick keeps the next probe on time`,
    ignore: library === undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using s = await sentryOnFakedClock();
      await s.pausesLogged(1);
      // Mid-tick: the probe has run, Docker is being read; held 100 ms so that the tick plainly spans the step.
      await s.inNextDockerRead(async () => {
        await s.clock.step(stepSeconds);
        await new Promise((resolve) => setTimeout(resolve, 100));
      });
      const steppedProbe = s.probes().length - 1;
      const before = pauses(s.sentry.logs).length;
      const pause = (await s.pausesLogged(before + 1))[before];
      assert.ok(pause > 0 && pause <= INTERVAL_SECONDS, `the tick the clock stepped in logged a ${pause} s pause`);
      const gap = await gapAfter(s.probes, steppedProbe, INTERVAL_SECONDS + SLACK_SECONDS);
      assert.ok(
        gap >= INTERVAL_SECONDS - 0.1,
        `the next probe came ${gap} s after, at a ${INTERVAL_SECONDS} s interval`,
      );
    },
  });

  Deno.test({
    name: `clock step: the wall clock stepping an hour ${direction} during the pause keeps the probes on time`,
    ignore: library === undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using s = await sentryOnFakedClock();
      const [first] = await s.pausesLogged(1);
      const pausedProbe = s.probes().length - 1;
      await s.clock.step(stepSeconds);
      const gap = await gapAfter(s.probes, pausedProbe, first + SLACK_SECONDS);
      assert.ok(gap >= first - 0.1, `the next probe came ${gap} s after a ${first} s pause`);
      const after = await s.pausesLogged(3);
      for (const pause of after.slice(1)) {
        assert.ok(pause > 0 && pause <= INTERVAL_SECONDS, `a ${pause} s pause after the step`);
      }
      const gapAfterThat = await gapAfter(s.probes, pausedProbe + 1, INTERVAL_SECONDS + SLACK_SECONDS);
      assert.ok(gapAfterThat >= INTERVAL_SECONDS - 0.1, `then ${gapAfterThat} s between probes`);
    },
  });
}

Deno.test({
  name: "clock step: a probe streak resumed by --once runs follows the time that passed, not the wall clock",
  ignore: library === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using clock = await fakedWallClock(library!, AHEAD_SECONDS);
    await using region = startRegionEndpoint(ca!);
    await region.set("refuse");
    await using docker = await startDockerApiEmulator(containers());
    const folder = `${dir}/streaks`;
    await Deno.mkdir(folder);
    // A probe period (interval + timeout) of 2 s: a streak survives a restart within two, 4 s.
    const run = async () => {
      const result = await runRoleToEnd("network-sentry", {
        env: clock.env,
        args: [
          "--once",
          "--region=eu-test-1",
          `--endpoint=${region.url}`,
          `--ca-file=${ca!.caFile}`,
          "--interval=1",
          "--timeout=1",
          "--failure-threshold=9",
          `--docker-host=${docker.host}`,
          `--state-file=${folder}/state.json`,
          `--logfile=${folder}/sentry.log`,
        ],
      });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      const status = await readStatus(statusFileFor(`${folder}/state.json`));
      return (status!.details.counters as { consecutiveFailures: number }).consecutiveFailures;
    };
    assert.equal(await run(), 1);
    await clock.step(HOUR_SECONDS);
    assert.equal(await run(), 2, "an hour's step forward between two runs a moment apart keeps the streak");
    await clock.step(-HOUR_SECONDS);
    assert.equal(await run(), 3, "and so does an hour's step back");
    // 5 s pass, and the clock is set back by as much: the wall clock says the last run was a moment ago.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    await clock.step(-5);
    assert.equal(await run(), 1, "a streak 5 s old is not resumed, whatever the wall clock says");
  },
});
