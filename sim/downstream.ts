/**
 * A downstream client of an emulated listener, on a raw TCP connection so that tests, the demo and the
 * benchmarks decide exactly when a connection opens, idles, carries a request and closes, and see the
 * moment the server closes it. And the clients of an emulated load balancer: {@link LoadBalancerTraffic}
 * opens new flows to a target for as long as the ELBv2 emulator routes new flows to it.
 * @module
 */
import { sleep } from "../lib/clock.ts";
import type { Elbv2State } from "./elbv2.ts";

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

export interface TrafficOptions {
  /** A new flow is opened this often while the load balancer routes to the target. */
  readonly everyMs: number;
  /** Each flow stays open this long, then the client closes it. */
  readonly holdMs: number;
}

/**
 * Clients reaching one target through a load balancer: every `everyMs`, if the ELBv2 emulator routes new
 * flows to the target (healthy, or an NLB target still propagating its deregistration), a TCP connection
 * to `127.0.0.1:port` (the application's listener) that lives `holdMs`. A refused connection is a flow
 * the load balancer sent to a target whose application had already stopped: the harm the sidecar prevents.
 */
export class LoadBalancerTraffic implements AsyncDisposable {
  /** When each flow was accepted by the application. */
  readonly served: number[] = [];
  /** When each flow was refused (nothing listening any more). */
  readonly refused: number[] = [];
  readonly #stop = new AbortController();
  readonly #running: Promise<void>;

  constructor(
    elbv2: Elbv2State,
    target: { readonly targetGroupArn: string; readonly id: string; readonly port: number },
    options: TrafficOptions,
  ) {
    this.#running = this.#run(elbv2, target, options);
  }

  async #run(elbv2: Elbv2State, target: { targetGroupArn: string; id: string; port: number }, options: TrafficOptions) {
    const flows: Promise<void>[] = [];
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      if (elbv2.routesNewFlows(target.targetGroupArn, target.id, target.port)) {
        flows.push(this.#flow(elbv2, target, options));
      }
      await sleep(options.everyMs, signal);
    }
    await Promise.all(flows);
  }

  async #flow(
    elbv2: Elbv2State,
    target: { targetGroupArn: string; id: string; port: number },
    options: TrafficOptions,
  ) {
    const at = Date.now();
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: "127.0.0.1", port: target.port });
    } catch {
      this.refused.push(at);
      return;
    }
    this.served.push(at);
    elbv2.countFlow(target.targetGroupArn, target.id, target.port, 1);
    await new Promise((r) => setTimeout(r, options.holdMs));
    elbv2.countFlow(target.targetGroupArn, target.id, target.port, -1);
    conn.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }
}
