/**
 * What the process-level sentry tests share: one private Docker engine and one endpoint emulator per
 * test file, a fresh state folder and container set per test, and polling helpers over real state.
 * @module
 */
import { readJsonFile } from "../../lib/atomic_file.ts";
import type { Journal } from "../../lib/network_sentry/machine.ts";
import { type DockerEngine, engineForTests } from "../../sim/docker_engine.ts";
import { createTestCa, type RegionEndpoint, startRegionEndpoint, type TestCa } from "../../sim/region_endpoint.ts";
import { type LogEntry, type RoleProcess, runRoleToEnd, spawnRole } from "../../sim/role_process.ts";

export { waitUntil } from "../../sim/wait.ts";

export interface Fixture {
  readonly engine: DockerEngine;
  readonly endpoint: RegionEndpoint;
  readonly ca: TestCa;
  readonly dir: string;
  close(): Promise<void>;
}

/** `undefined` (tests skip) when Docker cannot run here, unless REQUIRE_DOCKER=1. */
export async function startFixture(): Promise<Fixture | undefined> {
  const engine = await engineForTests();
  if (!engine) return undefined;
  const dir = await Deno.makeTempDir({ prefix: "sentry-test-" });
  const ca = await createTestCa(dir);
  const endpoint = startRegionEndpoint(ca);
  return {
    engine,
    endpoint,
    ca,
    dir,
    async close() {
      await endpoint.close();
      await engine.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * One engine and endpoint for a whole test file, closed after its last test, and the options its tests
 * run with: ignored where Docker cannot run (unless REQUIRE_DOCKER=1), and without the sanitizers, since
 * the fixture outlives each test on purpose.
 */
export async function fixtureForFile(): Promise<{
  fixture: Fixture | undefined;
  options: Pick<Deno.TestDefinition, "ignore" | "sanitizeOps" | "sanitizeResources">;
}> {
  const fixture = await startFixture();
  if (fixture) Deno.test.afterAll(() => fixture.close());
  return {
    fixture,
    options: { ignore: fixture === undefined, sanitizeOps: false, sanitizeResources: false },
  };
}

/** The standard host: the agent, a healthy task container, a crash-looping one, and an unlabelled one. */
export async function standardHost(engine: DockerEngine, crashAfter = 2): Promise<void> {
  await engine.removeAll();
  await Promise.all([
    engine.createAgent(),
    engine.createTask({ name: "web", family: "web", containerName: "web", behaviour: "healthy" }),
    engine.createTask({ name: "crasher", family: "batch", containerName: "worker", behaviour: "crash", crashAfter }),
    engine.createUnlabelled("not-ecs"),
  ]);
}

export class SentryCase {
  readonly journalFile: string;
  readonly logFile: string;
  readonly metricsFile: string;

  /** `journalDir`: where the journal goes, when not in the case's own folder (e.g. a tiny tmpfs). */
  constructor(readonly fixture: Fixture, name: string, journalDir?: string) {
    const folder = `${fixture.dir}/${name}`;
    Deno.mkdirSync(folder, { recursive: true });
    this.journalFile = `${journalDir ?? folder}/state.json`;
    this.logFile = `${folder}/sentry.log`;
    this.metricsFile = `${folder}/sentry.prom`;
  }

  /** The flags every run shares: fast probes against the emulator, this case's files, the private engine. */
  flags(extra: readonly string[] = []): string[] {
    return [
      "--region",
      "eu-test-1",
      "--endpoint",
      this.fixture.endpoint.url,
      "--ca-file",
      this.fixture.ca.caFile,
      "--interval",
      "0.2",
      "--timeout",
      "0.5",
      "--docker-host",
      this.fixture.engine.host,
      "--state-file",
      this.journalFile,
      "--logfile",
      this.logFile,
      "--metrics-file",
      this.metricsFile,
      ...extra,
    ];
  }

  start(extra: readonly string[] = []): RoleProcess {
    return spawnRole("network-sentry", { args: this.flags(extra) });
  }

  run(extra: readonly string[] = []) {
    return runRoleToEnd("network-sentry", { args: this.flags(extra) });
  }

  journal(): Promise<Journal | undefined> {
    return readJsonFile<Journal>(this.journalFile);
  }
}

/** The agent is paused and both task containers are on on-failure: the offline state is in force. */
export async function offlineApplied(engine: DockerEngine): Promise<boolean> {
  const states = await engine.states();
  return states.get("ecs-agent")?.status === "paused" && states.get("web")?.policy === "on-failure" &&
    states.get("crasher")?.policy === "on-failure";
}

/**
 * The hand-back is over: logged once the journal is cleared (the step `hand-back complete: clear the
 * journal` is announced before that write).
 */
export function handedBack(entry: LogEntry): boolean {
  return entry.message === "[ecs-online] hand-back complete, the ECS agent is in charge again";
}

/** Waits for the process to exit (after a signal) and returns its exit code. */
export async function stopped(sentry: RoleProcess, signal: Deno.Signal = "SIGTERM"): Promise<number> {
  sentry.kill(signal);
  return (await sentry.exited).code;
}
