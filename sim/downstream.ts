/**
 * A downstream client of an emulated listener, on a raw TCP connection so that tests, the demo and the
 * benchmarks decide exactly when a connection opens, idles, carries a request and closes, and see the
 * moment the server closes it.
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface DownstreamAnswer {
  readonly status: number;
  /** The server said `Connection: close`: it ends the connection after this answer. */
  readonly connectionClose: boolean;
}

export class DownstreamConnection {
  /** Resolves with the epoch ms at which the connection ended (closed by either side). */
  readonly ended: Promise<number>;
  readonly #conn: Deno.TcpConn;
  #received = "";
  #isEnded = false;
  #wake: Array<() => void> = [];

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.ended = this.#read();
  }

  /** Opens an idle keep-alive connection to `127.0.0.1:port`. */
  static async open(port: number): Promise<DownstreamConnection> {
    return new DownstreamConnection(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  get isEnded(): boolean {
    return this.#isEnded;
  }

  /** Sends one HTTP/1.1 request on this connection and reads its answer. */
  async request(target = "/"): Promise<DownstreamAnswer> {
    await this.#conn.write(encoder.encode(`GET ${target} HTTP/1.1\r\nhost: downstream\r\n\r\n`));
    for (;;) {
      const taken = takeResponse(this.#received);
      if (taken) {
        this.#received = this.#received.slice(taken.length);
        return taken.answer;
      }
      if (this.#isEnded) throw new Error("the connection ended before a whole answer arrived");
      await new Promise<void>((resolve) => this.#wake.push(resolve));
    }
  }

  /** Closes the connection from the client's side. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  async #read(): Promise<number> {
    const chunk = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#received += decoder.decode(chunk.subarray(0, n));
        this.#notify();
      }
    } catch {
      // closed locally or reset: either way the connection is over
    }
    this.#isEnded = true;
    this.close();
    this.#notify();
    return Date.now();
  }

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }
}

function takeResponse(text: string): { answer: DownstreamAnswer; length: number } | undefined {
  const headerEnd = text.indexOf("\r\n\r\n");
  if (headerEnd < 0) return undefined;
  const head = text.slice(0, headerEnd);
  const length = Number(head.match(/^content-length:\s*(\d+)/im)?.[1] ?? 0);
  if (text.length < headerEnd + 4 + length) return undefined;
  return {
    answer: {
      status: Number(head.match(/^HTTP\/1\.[01] (\d{3})/)?.[1]),
      connectionClose: /^connection:\s*close/im.test(head),
    },
    length: headerEnd + 4 + length,
  };
}

/** A loopback port that nothing listens on (it was free a moment ago): an endpoint that is down. */
export function unusedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
