/**
 * The loopback HTTP server under every emulator. Built on node:http because it can do what a real
 * outage does to a client: reset a connection or accept it and never answer.
 * @module
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { sleep } from "../lib/clock.ts";
import { type FaultKind, Faults } from "./faults.ts";

export interface SimRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface SimResponse {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
}

/** How a protocol renders the faults that are HTTP answers (the others are handled by the server). */
export interface FaultRenderer {
  throttled(request: SimRequest): SimResponse;
  serverError(request: SimRequest): SimResponse;
}

export type SimHandler = (request: SimRequest) => SimResponse | Promise<SimResponse>;

export interface SimServerOptions {
  readonly handle: SimHandler;
  readonly faults?: Faults;
  readonly renderFaults?: FaultRenderer;
  readonly hostname?: string;
  readonly port?: number;
  /** Listen on this unix socket path instead of TCP (e.g. Envoy's admin with `ENVOY_ADMIN_MODE=uds`). */
  readonly socketPath?: string;
}

export interface SimServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`, or `unix://<path>` on a unix socket. */
  readonly url: string;
  /** 0 on a unix socket. */
  readonly port: number;
  readonly faults: Faults;
  /** Requests received, faulted ones included. */
  readonly requestCount: number;
  close(): Promise<void>;
}

const plainFaults: FaultRenderer = {
  throttled: () => ({ status: 429, body: "Too Many Requests" }),
  serverError: () => ({ status: 500, body: "Internal Server Error" }),
};

export async function startSimServer(options: SimServerOptions): Promise<SimServer> {
  const faults = options.faults ?? new Faults();
  const render = options.renderFaults ?? plainFaults;
  const hanging = new Set<http.ServerResponse>();
  const closing = new AbortController();
  const servedOn = new WeakMap<object, number>();
  let requestCount = 0;
  const server = http.createServer(async (req, res) => {
    requestCount++;
    const earlierOnSocket = servedOn.get(req.socket) ?? 0;
    servedOn.set(req.socket, earlierOnSocket + 1);
    const chunks: Uint8Array[] = [];
    for await (const chunk of req) chunks.push(chunk as Uint8Array);
    const url = new URL(req.url ?? "/", "http://sim");
    const request: SimRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      headers: Object.fromEntries(
        Object.entries(req.headers).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v.join(",") : v ?? ""]),
      ),
      body: new TextDecoder().decode(concat(chunks)),
    };
    const fault: FaultKind | undefined = faults.next();
    if (fault === "reset") {
      // A client silently retries a request whose pooled keep-alive connection was reset; reset that
      // retry too, so the caller sees the failure as it would from a server that is really down.
      if (earlierOnSocket > 0) faults.failImmediately("reset");
      req.socket.destroy();
      return;
    }
    if (fault === "hang") {
      hanging.add(res);
      return;
    }
    if (faults.latencyMs > 0) await new Promise((r) => setTimeout(r, faults.latencyMs));
    let response: SimResponse;
    try {
      response = fault === "throttle"
        ? render.throttled(request)
        : fault === "server-error"
        ? render.serverError(request)
        : await options.handle(request);
    } catch (error) {
      response = { status: 500, body: `emulator error: ${(error as Error).message}` };
    }
    if (res.destroyed) return;
    if (fault === "garbled") {
      response = { ...response, status: 200, body: response.body?.slice(0, response.body.length >> 1) };
    }
    res.writeHead(response.status, { "content-type": "text/plain", ...response.headers });
    if (fault === "trickle") {
      hanging.add(res);
      await trickle(res, new TextEncoder().encode(response.body ?? ""), faults.trickleIntervalMs, closing.signal);
      hanging.delete(res);
      return;
    }
    res.end(response.body ?? "");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    if (options.socketPath !== undefined) server.listen(options.socketPath, () => resolve());
    else server.listen(options.port ?? 0, options.hostname ?? "127.0.0.1", () => resolve());
  });
  const bound = server.address();
  const { port, address } = typeof bound === "string" ? { port: 0, address: "" } : bound as AddressInfo;
  const host = address.includes(":") ? `[${address}]` : address;
  const url = typeof bound === "string" ? `unix://${bound}` : `http://${host}:${port}`;
  const close = async () => {
    closing.abort();
    for (const res of hanging) res.socket?.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return {
    url,
    port,
    faults,
    get requestCount() {
      return requestCount;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Sends `body` one byte at a time, `intervalMs` apart, until it is all sent or the client goes away. */
async function trickle(
  res: http.ServerResponse,
  body: Uint8Array,
  intervalMs: number,
  closing: AbortSignal,
): Promise<void> {
  res.flushHeaders();
  for (const byte of body) {
    if (!await sleep(intervalMs, closing) || res.destroyed) return;
    res.write(new Uint8Array([byte]));
  }
  res.end();
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** A JSON answer. */
export function json(status: number, value: unknown, headers: Record<string, string> = {}): SimResponse {
  return { status, headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(value) };
}
