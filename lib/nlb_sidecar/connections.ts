/**
 * Counting the application's open connections from the kernel's socket tables, `/proc/net/tcp` and
 * `/proc/net/tcp6`, which a sidecar shares with the application in awsvpc and host network mode.
 *
 * Deno lets a program open anything under /proc only while it holds every permission. The tables are
 * therefore opened once at start, before the sidecar gives up the permissions it does not need, and
 * read again through the same handles: a seq_file regenerates its content on every read from offset 0.
 * @module
 */

/** The socket state `01` in the `st` column. */
const ESTABLISHED = "01";

/**
 * ESTABLISHED sockets whose local port is one of `ports`, from the text of `/proc/net/tcp` or `tcp6`.
 * Only the local port counts: the application's accepted connections have the target port there, while
 * the sidecar's own outgoing calls have an ephemeral one.
 */
export function countEstablished(table: string, ports: ReadonlySet<number>): number {
  let count = 0;
  for (const line of table.split("\n")) if (isEstablishedOn(line, ports)) count++;
  return count;
}

function isEstablishedOn(line: string, ports: ReadonlySet<number>): boolean {
  // "  0: 0100007F:1F90 0100007F:C5A2 01 ...": slot, local address:port, remote address:port, state.
  const fields = line.trim().split(/\s+/, 4);
  if (fields.length < 4 || fields[3] !== ESTABLISHED) return false;
  const localPort = fields[1].split(":")[1];
  return localPort !== undefined && ports.has(parseInt(localPort, 16));
}

export const PROC_NET_TABLES = ["/proc/net/tcp", "/proc/net/tcp6"] as const;

/** Open handles on the socket tables; a table the kernel does not have (no IPv6) is left out. */
export class ConnectionTables implements Disposable {
  readonly #files: Deno.FsFile[];

  private constructor(files: Deno.FsFile[]) {
    this.#files = files;
  }

  static async open(paths: readonly string[] = PROC_NET_TABLES): Promise<ConnectionTables> {
    const files: Deno.FsFile[] = [];
    for (const path of paths) {
      try {
        files.push(await Deno.open(path, { read: true }));
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) {
          for (const file of files) file.close();
          throw error;
        }
      }
    }
    return new ConnectionTables(files);
  }

  /** ESTABLISHED connections on `ports` right now, IPv4 and IPv6 together. */
  async countEstablished(ports: ReadonlySet<number>): Promise<number> {
    let count = 0;
    for (const file of this.#files) {
      for await (const line of linesFromStart(file)) if (isEstablishedOn(line, ports)) count++;
    }
    return count;
  }

  [Symbol.dispose](): void {
    for (const file of this.#files) file.close();
    this.#files.length = 0;
  }
}

/** The table's lines, read in chunks: a busy host's table can hold many thousands of sockets. */
async function* linesFromStart(file: Deno.FsFile): AsyncGenerator<string> {
  await file.seek(0, Deno.SeekMode.Start);
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(64 * 1024);
  let pending = "";
  for (;;) {
    const read = await file.read(buffer);
    if (read === null) break;
    const lines = (pending + decoder.decode(buffer.subarray(0, read), { stream: true })).split("\n");
    pending = lines.pop()!;
    yield* lines;
  }
  const rest = pending + decoder.decode();
  if (rest) yield rest;
}
