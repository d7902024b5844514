/**
 * Runs a role as its own process with exactly the flags its compiled binary gets (lib/roles.ts), and
 * watches its JSON log lines: how tests, benchmarks and the demo run a role as its binary would.
 * @module
 */
import { denoRunArgs, roleInfo, type RoleName } from "../lib/roles.ts";
import { bundlesStale } from "../tools/bundle.ts";

export interface LogEntry {
  readonly time: string;
  readonly level: string;
  readonly message: string;
  readonly [field: string]: unknown;
}

export interface RoleProcess extends AsyncDisposable {
  readonly pid: number;
  /** Every parsed JSON log line so far. */
  readonly logs: LogEntry[];
  /** Raw stdout lines that were not JSON, and all of stderr. */
  readonly otherOutput: string[];
  /** Resolves with the first log entry matching `predicate` (already seen or yet to come). */
  waitForLog(predicate: (entry: LogEntry) => boolean, timeoutMs?: number): Promise<LogEntry>;
  kill(signal?: Deno.Signal): void;
  /** Exit code and the time it arrived (ms epoch). */
  readonly exited: Promise<{ code: number; signal: Deno.Signal | null; at: number }>;
}

export interface SpawnOptions {
  readonly args?: readonly string[];
  /** Added to a minimal environment (PATH, HOME, TMPDIR); the test's own environment is not inherited. */
  readonly env?: Readonly<Record<string, string>>;
  /** When `false`, stdout is not parsed as JSON lines. */
  readonly json?: boolean;
  /**
   * A command prefix that runs the deno command line appended to it, e.g. `docker run ... image` (the
   * benchmarks' containers, bench/memory_cage.ts): stdout, stderr, signals and the exit code pass through.
   */
  readonly wrapper?: readonly string[];
  /** The deno executable (inside the wrapper's world, e.g. `/deno` in a container); by default this one. */
  readonly denoPath?: string;
}

const projectRoot = new URL("../", import.meta.url).pathname;

let bundlesChecked = false;

/** Roles run from dist/bundle/: a bundle older than the sources would test code that no longer exists. */
function assertBundlesCurrent(): void {
  if (bundlesChecked) return;
  const stale = bundlesStale();
  if (stale !== undefined) {
    throw new Error(`${stale}: run \`make bundle\` (or \`deno task bundle\`) before running a role's process`);
  }
  bundlesChecked = true;
}

/**
 * What every role process gets besides the caller's environment. `deno run`, unlike the compiled binary,
 * checks for a newer Deno over the network, through HTTPS_PROXY when one is set: a proxy test then saw a
 * tunnel to Deno's download host besides the sentry's own probe (and no traffic may leave loopback).
 */
const RUNTIME_ENV = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" } as const;

export function spawnRole(name: RoleName, options: SpawnOptions = {}): RoleProcess {
  assertBundlesCurrent();
  const role = roleInfo(name)!;
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
    ...RUNTIME_ENV,
    ...options.env,
  };
  if (!env.DENO_DIR) delete env.DENO_DIR;
  const command = [
    ...options.wrapper ?? [],
    options.denoPath ?? Deno.execPath(),
    ...denoRunArgs(role, options.args ?? []),
  ];
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    cwd: projectRoot,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: LogEntry[] = [];
  const otherOutput: string[] = [];
  const waiters: Array<{ predicate: (e: LogEntry) => boolean; resolve: (e: LogEntry) => void }> = [];
  const onLine = (line: string, fromStdout: boolean) => {
    if (!line.trim()) return;
    if (fromStdout && options.json !== false) {
      try {
        const entry = JSON.parse(line) as LogEntry;
        logs.push(entry);
        for (const waiter of [...waiters]) {
          if (waiter.predicate(entry)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(entry);
          }
        }
        return;
      } catch {
        // not a JSON line: kept as other output
      }
    }
    otherOutput.push(line);
  };
  const pump = async (stream: ReadableStream<Uint8Array>, fromStdout: boolean) => {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        onLine(buffer.slice(0, newline), fromStdout);
        buffer = buffer.slice(newline + 1);
      }
    }
    onLine(buffer, fromStdout);
  };
  const pumps = Promise.all([pump(child.stdout, true), pump(child.stderr, false)]);
  const exited = child.status.then(async (status) => {
    const at = Date.now();
    await pumps;
    return { code: status.code, signal: status.signal, at };
  });
  return {
    pid: child.pid,
    logs,
    otherOutput,
    exited,
    waitForLog(predicate, timeoutMs = 15_000) {
      const seen = logs.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(
              `no matching log line within ${timeoutMs} ms; got:\n${
                [...logs.map((l) => JSON.stringify(l)), ...otherOutput].join("\n")
              }`,
            ),
          );
        }, timeoutMs);
        const waiter = { predicate, resolve: (e: LogEntry) => (clearTimeout(timer), resolve(e)) };
        waiters.push(waiter);
        exited.then(() => {
          if (!waiters.includes(waiter)) return;
          clearTimeout(timer);
          reject(
            new Error(
              `process exited before a matching log line; got:\n${
                [...logs.map((l) => JSON.stringify(l)), ...otherOutput].join("\n")
              }`,
            ),
          );
        });
      });
    },
    kill(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    },
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await exited;
    },
  };
}

/** Runs a role to completion (for `--help`, `health`, bad settings) and returns its exit code and output. */
export async function runRoleToEnd(
  name: RoleName,
  options: SpawnOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  assertBundlesCurrent();
  const role = roleInfo(name)!;
  const command = [...options.wrapper ?? [], Deno.execPath(), ...denoRunArgs(role, options.args ?? [])];
  const output = await new Deno.Command(command[0], {
    args: command.slice(1),
    cwd: projectRoot,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/root",
      ...RUNTIME_ENV,
      ...options.env,
    },
    clearEnv: true,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}
