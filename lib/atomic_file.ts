/**
 * Crash-safe file replacement: a reader (or a process restarted after SIGKILL) sees either the old
 * content or the new, never a torn write.
 * @module
 */
import { dirname } from "node:path";

/**
 * Writes `text` to a temp file beside `path`, fsyncs it, renames it over `path`, then fsyncs the folder.
 * `mode` defaults to owner-only; files other users must read (a metrics file) pass e.g. 0o644.
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  const folder = dirname(path);
  await Deno.mkdir(folder, { recursive: true });
  const temp = `${path}.${Deno.pid}.tmp`;
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
