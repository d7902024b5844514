/**
 * The journal on disk: what the sentry changed, written atomically before each step so a restarted
 * sentry (after SIGKILL, a reboot, an upgrade) resumes exactly where it was. A lock file beside it
 * keeps the daemon and a `resume` run by an operator from interleaving their changes.
 * @module
 */
import { dirname } from "node:path";
import { readJsonFile, writeFileAtomic } from "../atomic_file.ts";
import { sleep } from "../clock.ts";
import { type Journal, type Mode, MODES, ONLINE } from "./machine.ts";

/** The journal could not be read or makes no sense: the sentry will not guess what it once changed. */
export class JournalError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`state file ${path}: ${reason}`);
    this.name = "JournalError";
  }
}

/**
 * The journal could not be written (a full disk, a read-only mount). The store keeps the journal in
 * memory and `load` returns it, so the sentry keeps protecting from what it knows and writes it again later.
 */
export class JournalWriteError extends Error {
  constructor(readonly path: string, cause: unknown) {
    super(`cannot write the journal ${path}: ${(cause as Error).message ?? String(cause)}`, { cause });
    this.name = "JournalWriteError";
  }
}

/** Whose journal it is: one from another host, or for another agent container, must not be acted on here. */
export interface JournalOwner {
  /** `undefined` when the host name cannot be read: the host is then neither stamped nor checked. */
  readonly host?: string;
  readonly agentContainer: string;
}

export interface JournalStore {
  readonly path: string;
  /** The journal on disk, or the one kept in memory since a write failed. */
  load(): Promise<Journal>;
  /** Writes atomically; on failure keeps `journal` in memory and throws {@link JournalWriteError}. */
  save(journal: Journal): Promise<void>;
  /** A write failed and has not succeeded since: disk and memory differ. */
  readonly unsaved: boolean;
  /**
   * Runs `work` while holding the journal's lock (no-op lock for a dry run). Waiting for the lock ends
   * with `signal`'s reason as soon as it aborts, so a shutdown never hangs behind another holder.
   */
  locked<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

/** How often a busy lock is tried again: a `resume` holds it for a few Docker calls at most. */
const LOCK_RETRY_MS = 100;

/** The journal file itself; with an `owner`, stamped on every write and checked on every read. */
export function fileJournal(path: string, owner?: JournalOwner): JournalStore {
  let unsaved: Journal | undefined;
  return {
    path,
    get unsaved() {
      return unsaved !== undefined;
    },
    load: async () => unsaved ?? checkOwner(path, await readJournal(path), owner),
    async save(journal) {
      try {
        await writeFileAtomic(path, JSON.stringify({ ...journal, ...owner }, null, 2) + "\n");
        unsaved = undefined;
      } catch (error) {
        unsaved = journal;
        throw new JournalWriteError(path, error);
      }
    },
    async locked(work, signal) {
      signal?.throwIfAborted();
      using file = await openLockFile(path);
      // The journal's disk may have gone read-only or full since the start: protecting the host from memory
      // unlocked beats dying mid-outage (the write that follows fails and is retried, logged with its path).
      if (file === undefined) return await work();
      // Tried rather than awaited: a blocking lock() cannot be cancelled and would keep a stopping process alive.
      while (!await file.tryLock(true)) {
        if (!await sleep(LOCK_RETRY_MS, signal)) throw signal!.reason;
      }
      try {
        return await work();
      } finally {
        await file.unlock();
      }
    },
  };
}

/**
 * The journal's lock file, apart from the journal because the journal is replaced by rename, which would
 * drop a lock held on it. Opened for reading where it can no longer be written (an exclusive flock needs
 * no write access); undefined where it cannot be opened at all.
 */
async function openLockFile(path: string): Promise<Deno.FsFile | undefined> {
  const lockPath = `${path}.lock`;
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
    return await Deno.open(lockPath, { write: true, create: true, mode: 0o600 });
  } catch {
    return await Deno.open(lockPath, { read: true }).catch(() => undefined);
  }
}

/** A dry run starts from the real journal but never writes it back. */
export function dryRunJournal(path: string, owner?: JournalOwner): JournalStore {
  let memory: Journal | undefined;
  return {
    path,
    load: async () => memory ??= checkOwner(path, await readJournal(path), owner),
    save: (journal) => {
      memory = journal;
      return Promise.resolve();
    },
    unsaved: false,
    locked: (work) => work(),
  };
}

/**
 * A journal that something of a sentry's is in effect under, written on another host or for another
 * agent container, describes containers and an agent that are not this sentry's: refused, like a corrupt one.
 * Journals from before the stamp carry no owner and are taken as this host's.
 */
function checkOwner(path: string, journal: Journal, owner: JournalOwner | undefined): Journal {
  if (owner === undefined || journal.mode === "online") return journal;
  if (journal.host !== undefined && owner.host !== undefined && journal.host !== owner.host) {
    throw new JournalError(
      path,
      `written on ${journal.host}, and this host is ${owner.host}: its containers and agent are not this host's; ` +
        "inspect or move the file",
    );
  }
  if (journal.agentContainer !== undefined && journal.agentContainer !== owner.agentContainer) {
    throw new JournalError(
      path,
      `written for --agent-container ${journal.agentContainer}, and this sentry runs with ${owner.agentContainer}: ` +
        `run it with --agent-container ${journal.agentContainer} to finish that hand-back, or move the file`,
    );
  }
  return journal;
}

async function readJournal(path: string): Promise<Journal> {
  let raw: unknown;
  try {
    raw = await readJsonFile<unknown>(path);
  } catch (error) {
    throw new JournalError(path, (error as Error).message);
  }
  if (raw === undefined) return ONLINE;
  const journal = raw as Partial<Journal>;
  if (journal.version !== 1 || !MODES.includes(journal.mode as Mode) || !Array.isArray(journal.containers)) {
    throw new JournalError(path, "not a network-sentry journal (version 1)");
  }
  return journal as Journal;
}
