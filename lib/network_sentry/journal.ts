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

export interface JournalStore {
  readonly path: string;
  load(): Promise<Journal>;
  save(journal: Journal): Promise<void>;
  /**
   * Runs `work` while holding the journal's lock (no-op lock for a dry run). Waiting for the lock ends
   * with `signal`'s reason as soon as it aborts, so a shutdown never hangs behind another holder.
   */
  locked<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

/** How often a busy lock is tried again: a `resume` holds it for a few Docker calls at most. */
const LOCK_RETRY_MS = 100;

/** The journal file itself. */
export function fileJournal(path: string): JournalStore {
  return {
    path,
    load: () => readJournal(path),
    save: (journal) => writeFileAtomic(path, JSON.stringify(journal, null, 2) + "\n"),
    async locked(work, signal) {
      signal?.throwIfAborted();
      await Deno.mkdir(dirname(path), { recursive: true });
      // A separate lock file: the journal itself is replaced by rename, which would drop a lock held on it.
      using file = await Deno.open(`${path}.lock`, { write: true, create: true, mode: 0o600 });
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

/** A dry run starts from the real journal but never writes it back. */
export function dryRunJournal(path: string): JournalStore {
  let memory: Journal | undefined;
  return {
    path,
    load: async () => memory ??= await readJournal(path),
    save: (journal) => {
      memory = journal;
      return Promise.resolve();
    },
    locked: (work) => work(),
  };
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
