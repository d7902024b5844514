/**
 * What the daemon tells its `health` subcommand through the status file, and the health rule. ECS runs
 * `health` as the essential container's healthCheck in an image with no shell, so the rule must be
 * answerable from the file alone, and an unhealthy verdict makes ECS replace the task.
 *
 * The rule therefore asks "is the sidecar doing its job?", not "did AWS answer lately?": a sidecar must
 * never take its application down because AWS hiccuped. Account-wide ELB throttling lasting minutes
 * would otherwise mark every task of every service unhealthy at once and make ECS replace the fleet.
 * Healthy while discovery is within DISCOVERY_TIMEOUT or, past it, retrying a transient failure on
 * schedule, while polls keep completing with an answer or a transient error, or while a drain is within
 * its deadline. Unhealthy once discovery failed for
 * good, once the watch loop stalls, or once every poll has failed with a permanent error (access
 * denied, target group not found) for three polling intervals: states only a fix or a restart ends.
 * @module
 */
import { basename, dirname, extname } from "node:path";
import { monotonicNow, sleep } from "../clock.ts";
import type { Logger } from "../log.ts";
import { readStatus, type Status, writeStatus } from "../status_file.ts";
import type { MachineStatus } from "./machine.ts";
import { notOwnStatus, processStart, type StatusWriter } from "./status_writer.ts";

export type SidecarState = "discovering" | "discovery-failed" | "watching" | "draining" | "finished";

/**
 * Every time in here is on {@link monotonicNow}: boot-time milliseconds, which the `health` process reads
 * on the same scale, so a wall-clock step between the two changes no age.
 */
export interface SidecarStatusDetails extends Partial<Omit<MachineStatus, "phase">> {
  /** The interval in force: POLLING_FREQUENCY, or the watch's slower pace while AWS throttles. */
  readonly pollIntervalMs: number;
  /** How long one AWS call may take: a poll may complete this late without the loop being stuck. */
  readonly requestTimeoutMs: number;
  /** When discovery stops waiting for a task that is not ready yet (start + DISCOVERY_TIMEOUT). */
  readonly discoveryDeadline?: number;
  /** The transient failure discovery is retrying, and when it tries again. */
  readonly retrying?: { readonly step: string; readonly error: string; readonly nextAttemptAt: number };
  /** Why discovery failed, for the operator who reads the file. */
  readonly cause?: string;
  /** When the daemon wrote the file. */
  readonly writtenAt?: number;
  /** Who wrote it: `health` trusts only its own container's running daemon. */
  readonly writer?: StatusWriter;
}

/** How many polling intervals (plus the request timeout) the watch may go without a usable poll. */
export const STALE_AFTER_INTERVALS = 3;
/** How far past its own deadline a daemon that is discovering or draining counts as hung, not late. */
export const DEADLINE_SLACK_MS = 5_000;

export interface HealthVerdict {
  readonly healthy: boolean;
  readonly reason: string;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function healthVerdict(status: Status | undefined, now: number): HealthVerdict {
  if (status === undefined) return { healthy: false, reason: "no status file: the sidecar has not started yet" };
  const details = status.details as Partial<SidecarStatusDetails>;
  switch (status.state) {
    case "discovering":
      return discoveringVerdict(details, now);
    case "discovery-failed":
      return { healthy: false, reason: `discovery failed: ${details.cause ?? "see the sidecar's log"}` };
    case "watching":
      return watchingVerdict(details, now);
    case "draining":
      return withinDeadline("draining", details.drainDeadline ?? 0, "the end of DEREGISTRATION_WAIT", now);
    case "finished":
      return withinDeadline("finished", details.writtenAt ?? 0, "the watch finished", now);
    default:
      return { healthy: false, reason: `unknown state ${JSON.stringify(status.state)} in the status file` };
  }
}

function withinDeadline(state: SidecarState, deadline: number, what: string, now: number): HealthVerdict {
  if (now <= deadline + DEADLINE_SLACK_MS) {
    return {
      healthy: true,
      reason: `${state}: ${seconds(Math.abs(deadline - now))} ${now <= deadline ? "before" : "after"} ${what}`,
    };
  }
  return { healthy: false, reason: `${state}, ${seconds(now - deadline)} after ${what}: the sidecar is stuck` };
}

/**
 * Within DISCOVERY_TIMEOUT, or past it while discovery keeps retrying a transient AWS failure: a
 * regional API event must not make ECS replace every task that starts during it.
 */
function discoveringVerdict(details: Partial<SidecarStatusDetails>, now: number): HealthVerdict {
  const requestTimeoutMs = details.requestTimeoutMs ?? 0;
  const retrying = details.retrying;
  // The last attempt may start just before its time and take the whole request timeout.
  const deadline = (details.discoveryDeadline ?? 0) + requestTimeoutMs;
  if (retrying === undefined || now <= deadline + DEADLINE_SLACK_MS) {
    return withinDeadline("discovering", deadline, "the end of DISCOVERY_TIMEOUT", now);
  }
  const verdict = withinDeadline(
    "discovering",
    retrying.nextAttemptAt + requestTimeoutMs,
    "the next attempt was due",
    now,
  );
  return verdict.healthy
    ? {
      healthy: true,
      reason: `discovering past DISCOVERY_TIMEOUT: ${retrying.step} keeps failing with ${retrying.error}, ` +
        `which is transient, so it is retried until AWS recovers; ${verdict.reason}`,
    }
    : verdict;
}

function watchingVerdict(details: Partial<SidecarStatusDetails>, now: number): HealthVerdict {
  const window = STALE_AFTER_INTERVALS * (details.pollIntervalMs ?? 0) + (details.requestTimeoutMs ?? 0);
  const windowText = `${STALE_AFTER_INTERVALS} polling intervals plus the request timeout (${seconds(window)})`;
  // Until the first poll completes, the watch's start is the reference: the first poll is due at once.
  const age = (at: number | undefined) => now - (at ?? details.watchStartedAt ?? 0);
  const lastSuccess = details.lastSuccessfulPollAt === undefined
    ? "no successful poll of every target group yet"
    : `last successful poll of every target group ${seconds(age(details.lastSuccessfulPollAt))} ago`;
  const sinceCompleted = age(details.lastPollCompletedAt);
  if (sinceCompleted > window) {
    return {
      healthy: false,
      reason: `watching, but no poll has completed for ${seconds(sinceCompleted)}, more than ${windowText}: ` +
        `the watch loop is stuck`,
    };
  }
  const sinceUsable = age(details.lastPollWithoutPermanentErrorAt);
  if (sinceUsable > window) {
    return {
      healthy: false,
      reason: `watching, but every poll for ${seconds(sinceUsable)}, more than ${windowText}, failed with a ` +
        `permanent error (${details.lastPollError?.code ?? "unknown"}): fix the task role or the service's ` +
        `target groups; ${lastSuccess}`,
    };
  }
  const error = details.lastPollError;
  const failing = error && (details.lastSuccessfulPollAt === undefined || error.at > details.lastSuccessfulPollAt)
    ? `; last failed poll ${seconds(age(error.at))} ago (${error.code}, ${error.transient ? "transient" : "permanent"})`
    : "";
  return {
    healthy: true,
    reason: `watching, last poll completed ${seconds(sinceCompleted)} ago; ${lastSuccess}${failing}`,
  };
}

/**
 * Where the status goes when STATUS_FILE cannot be written: with `readonlyRootFilesystem: true`
 * (Security Hub ECS.5) and no volume, /tmp is read-only, but the container runtime still mounts
 * /dev/shm as a writable tmpfs of its own (Docker's and containerd's default mounts; Podman's
 * --read-only keeps /dev and /dev/shm read-write unless --read-only-tmpfs=false), and `health`, which
 * ECS runs inside the same container, sees it. It is memory, but the file is a few hundred bytes.
 * Under `ipcMode: host` or `task` other containers share that /dev/shm, hence a name of the container's
 * own ({@link fallbackStatusPath}).
 */
export const FALLBACK_STATUS_DIR = "/dev/shm";

/**
 * The fallback for STATUS_FILE `path` in the container with `containerKey` `container`: its file
 * name with the key before the extension (`ecs-nlb-sidecar.status.0123456789abcdef.json`), so that
 * sidecars sharing a /dev/shm never write one file, and the daemon and its `health` find the same one.
 */
export function fallbackStatusPath(path: string, container: string): string {
  const name = basename(path);
  const extension = extname(name);
  return `${FALLBACK_STATUS_DIR}/${name.slice(0, name.length - extension.length)}.${container}${extension}`;
}

/** The places the status may be in, STATUS_FILE first; only it when it is in /dev/shm already. */
export function statusPlaces(path: string, container: string): string[] {
  return dirname(path) === FALLBACK_STATUS_DIR ? [path] : [path, fallbackStatusPath(path, container)];
}

/** `Read-only file system`, from Deno's `Read-only file system (os error 30): open '/tmp/x'`. */
function osReason(error: unknown): string {
  return String((error as Error)?.message ?? error).replace(/ \(os error \d+\).*$/s, "");
}

const writableFix = (path: string) =>
  `mount a volume at ${dirname(path)}, or set STATUS_FILE to a file on a writable volume`;

const writtenAt = (status: Status) => (status.details as Partial<SidecarStatusDetails>).writtenAt ?? 0;

/**
 * The health verdict for the freshest status among {@link statusPlaces} that this container's running
 * daemon wrote (`container`: the `containerKey` of the container `health` runs in). Any other
 * status is set aside, STATUS_FILE's too, since one volume can be mounted into several sidecars; a file
 * that cannot be read is unhealthy, and so is none at all, with the reason: not started yet, or nowhere
 * to write it.
 */
export async function checkHealth(
  path: string,
  container: string,
  now: number = monotonicNow(),
): Promise<HealthVerdict> {
  const places = statusPlaces(path, container);
  let freshest: Status | undefined;
  const unusable: string[] = [];
  for (const place of places) {
    try {
      const status = await readStatusSettled(place);
      if (status === undefined) continue;
      const notOwn = notOwnStatus(status, container, await processStart(status.pid));
      if (notOwn !== undefined) unusable.push(`${place} is not this sidecar's status: ${notOwn}`);
      else if (freshest === undefined || writtenAt(status) > writtenAt(freshest)) freshest = status;
    } catch (error) {
      unusable.push(`cannot read ${place}: ${osReason(error)}`);
    }
  }
  if (freshest !== undefined) return healthVerdict(freshest, now);
  if (unusable.length > 0) return { healthy: false, reason: unusable.join("; ") };
  const notWritable = [];
  for (const place of places) {
    const problem = await whyNotWritable(dirname(place));
    if (problem !== undefined) notWritable.push(`status file ${place} not writable: ${problem}`);
  }
  if (notWritable.length === places.length) {
    return { healthy: false, reason: `no status file: ${notWritable.join("; ")}; ${writableFix(path)}` };
  }
  return { healthy: false, reason: `no status file at ${places.join(" or ")}: the sidecar has not started yet` };
}

/** Why no file can be created in `folder`, or `undefined` if one can (or the folder is not there yet). */
async function whyNotWritable(folder: string): Promise<string | undefined> {
  try {
    await Deno.remove(await Deno.makeTempFile({ dir: folder, prefix: ".health-probe-" }));
    return undefined;
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? undefined : osReason(error);
  }
}

/**
 * The status in /dev/shm, through a file opened once: Deno lets only a process holding every
 * permission open paths under /dev, and the sidecar gives two up after start. Opening truncates: what
 * an earlier process left there is never this one's status, and a longer leftover would otherwise
 * keep its tail after every shorter write, unreadable for good. Each write then replaces the content
 * in one write(2) at offset 0, padded with spaces to the longest content this process has written
 * (JSON allows trailing whitespace), so after the first write the file is never empty or shorter than
 * a complete status; a reader that still catches a write half done reads again
 * ({@link readStatusSettled}).
 */
class OpenStatusFile {
  #longest = 0;

  private constructor(readonly path: string, readonly file: Deno.FsFile) {}

  static async open(path: string): Promise<OpenStatusFile> {
    return new OpenStatusFile(path, await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o600 }));
  }

  async write(status: Status): Promise<void> {
    const text = JSON.stringify(status);
    this.#longest = Math.max(this.#longest, text.length);
    const bytes = new TextEncoder().encode(text.padEnd(this.#longest) + "\n");
    await this.file.seek(0, Deno.SeekMode.Start);
    let offset = 0;
    while (offset < bytes.length) offset += await this.file.write(bytes.subarray(offset));
  }
}

/** Reads a status file, again after a moment if a write was caught half done (see {@link OpenStatusFile}). */
async function readStatusSettled(path: string): Promise<Status | undefined> {
  for (let attempt = 0;; attempt++) {
    try {
      return await readStatus(path);
    } catch (error) {
      if (!(error instanceof SyntaxError) || attempt >= 2) throw error;
      await sleep(20);
    }
  }
}

/**
 * Keeps the status file current, in STATUS_FILE or, when that cannot be written, in /dev/shm; a failed
 * write is logged (once per streak) and never stops the daemon. The first report must come before the
 * sidecar drops permissions, so that the fallback can still be opened.
 */
/** What the watch reports: everything but the fixed timing, and the pace when it differs. */
type StatusDetailsReported = Omit<SidecarStatusDetails, "pollIntervalMs" | "requestTimeoutMs"> & {
  readonly pollIntervalMs?: number;
};

export class StatusReporter {
  #failing = false;
  #fallback?: OpenStatusFile;
  /** Writes run one after another: two at once would share the temp file. */
  #writing: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    readonly timing: Pick<SidecarStatusDetails, "pollIntervalMs" | "requestTimeoutMs">,
    readonly log: Logger,
    /** This process, from `thisWriter`: read before the sidecar gives up permissions (/proc). */
    readonly writer: StatusWriter,
  ) {}

  /** The watch's pace, when given, replaces POLLING_FREQUENCY: the health window stretches with it. */
  report(state: SidecarState, details: StatusDetailsReported = {}): Promise<void> {
    this.#writing = this.#writing.then(() => this.#write(state, details));
    return this.#writing;
  }

  async #write(state: SidecarState, details: StatusDetailsReported) {
    const status: Status = {
      role: "nlb-sidecar",
      pid: Deno.pid,
      updatedAt: Date.now(),
      state,
      details: { ...this.timing, ...details, writtenAt: monotonicNow(), writer: this.writer },
    };
    try {
      await (this.#fallback ? this.#fallback.write(status) : writeStatus(this.path, status));
      this.#failing = false;
      return;
    } catch (error) {
      const fallback = statusPlaces(this.path, this.writer.container)[1];
      if (this.#fallback === undefined && fallback !== undefined) {
        this.#failing = !await this.#fallBack(fallback, status, error);
        return;
      }
      if (!this.#failing) {
        this.log.warning("cannot write the status file {path}: {detail}; the health check will fail", {
          path: this.#fallback?.path ?? this.path,
          detail: osReason(error),
        });
      }
      this.#failing = true;
    }
  }

  /** Moves the status to `fallback`; false (logged once per streak) when that cannot be written either. */
  async #fallBack(fallback: string, status: Status, error: unknown): Promise<boolean> {
    let file: OpenStatusFile | undefined;
    try {
      file = await OpenStatusFile.open(fallback);
      await file.write(status);
      this.#fallback = file;
      this.log.warning(
        "status file {path} not writable: {detail}; writing {fallback} instead, where `health` looks too",
        { path: this.path, detail: osReason(error), fallback, fix: writableFix(this.path) },
      );
      return true;
    } catch (fallbackError) {
      // Opened but not written (a full /dev/shm): the next report opens it anew, so close this one.
      file?.file.close();
      if (this.#failing) return false;
      this.log.error(
        "cannot write the status file {path} ({detail}) nor {fallback} ({fallbackDetail}): the health check " +
          "will fail. Fix: {fix}",
        {
          path: this.path,
          detail: osReason(error),
          fallback,
          fallbackDetail: osReason(fallbackError),
          fix: writableFix(this.path),
        },
      );
      return false;
    }
  }

  [Symbol.dispose](): void {
    this.#fallback?.file.close();
  }
}
