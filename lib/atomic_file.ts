/**
 * Crash-safe file replacement: a reader (or a process restarted after SIGKILL) sees either the old
 * content or the new, never a torn write.
 * @module
 */
import { basename, dirname, join } from "node:path";

/** The temp file a write goes through; one per process, so two writers never share one. */
function tempFileFor(path: string, pid: number): string {
  return `${path}.${pid}.tmp`;
}

/**
 * Writes `text` to a temp file beside `path`, fsyncs it, renames it over `path`, then fsyncs the folder.
 * `mode` defaults to owner-only; files other users must read (a metrics file) pass e.g. 0o644.
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  const folder = dirname(path);
  await Deno.mkdir(folder, { recursive: true });
  const temp = tempFileFor(path, Deno.pid);
  try {
    const file = await Deno.open(temp, { write: true, create: true, truncate: true, mode });
    try {
      const bytes = new TextEncoder().encode(text);
      let offset = 0;
      while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (error) {
    // A half-written temp file on a full disk holds the very space the next attempt needs.
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  try {
    const dir = await Deno.open(folder, { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic there.
  }
}

/** Reads and parses a JSON file; `undefined` when it does not exist. */
export async function readJsonFile<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return JSON.parse(text) as T;
}

/**
 * Removes the temp files that writers of `path` killed mid-write left behind (any process's but this
 * one's); returns their paths. A missing folder has none.
 */
export async function removeStaleTempFiles(path: string): Promise<string[]> {
  const folder = dirname(path);
  const own = basename(tempFileFor(path, Deno.pid));
  const prefix = `${basename(path)}.`;
  const removed: string[] = [];
  try {
    for await (const entry of Deno.readDir(folder)) {
      const isTemp = entry.name.startsWith(prefix) && /^\d+\.tmp$/.test(entry.name.slice(prefix.length));
      if (!entry.isFile || !isTemp || entry.name === own) continue;
      await Deno.remove(join(folder, entry.name));
      removed.push(join(folder, entry.name));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return removed;
}
