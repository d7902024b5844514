/**
 * A TLS-inspecting ("bumping") corporate proxy on loopback: the set-up `--ca-file` is for.
 *
 * What the real ones do, and this one too:
 * - It accepts `CONNECT host:443` with `200 Connection established` before it has spoken to the upstream,
 *   then terminates the client's TLS itself with a certificate minted by its own CA (Squid's SslBump
 *   "client-first" bumping, https://wiki.squid-cache.org/Features/SslBump; a web filter's sequence,
 *   https://diladele.com/websafety/docs/faq/squid/https_decryption/cannot_connect_to_site_using_https: "returns
 *   200 Connect Established ... starts HTTPS decryption, imitating the ... certificate").
 * - It makes its own verified TLS connection upstream and relays each decrypted request; what the upstream
 *   answers (status, headers, body) reaches the client unchanged, plus a `Via` header.
 * - When the upstream cannot be reached it answers, inside the bumped TLS connection, with its own HTML
 *   error page: 503 with `X-Squid-Error: ERR_CONNECT_FAIL 111` for a refused or reset connection (and
 *   `ERR_SECURE_CONNECT_FAIL` for a failed upstream handshake, `ERR_DNS_FAIL` for a name it cannot
 *   resolve), 504 `ERR_READ_TIMEOUT` when the upstream does not answer in time (squid-cache/squid
 *   errors/templates/ERR_CONNECT_FAIL and src/error/forward.cc; real 5xx pages carry `Server: squid` and
 *   `X-Squid-Error`, e.g. `HTTP/1.1 502 Bad Gateway · Server: squid/6.14 · X-Squid-Error: ERR_READ_ERROR 0`).
 *   To the client this is an HTTP answer over TLS it trusts: only its content says ECS never answered.
 * - It keeps no upstream connection alive across requests here, so an upstream outage is seen by the next
 *   request (a pooled connection would hide it only until it too is cut, as it is in a real outage).
 * @module
 */
import { readUntil } from "../lib/network_sentry/probe.ts";
import type { TestCa } from "./region_endpoint.ts";

export interface BumpingProxyOptions {
  /** The proxy's own CA: the certificate it presents for every site is signed by it. */
  readonly ca: TestCa;
  /** Roots the proxy trusts when it connects upstream (the region's CA). */
  readonly upstreamCaPem: string;
  /** `CONNECT` target `host:port` -> loopback port of the real server; other names fail as DNS would. */
  readonly routes: Readonly<Record<string, number>>;
  /**
   * How long the proxy waits for its upstream before its own 504. Squid's `connect_timeout` is 1 minute
   * (and `read_timeout` 15 minutes) by default; tests pass less.
   */
  readonly upstreamTimeoutMs?: number;
}

export interface BumpingProxy extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** `CONNECT` targets asked for, in order. */
  readonly tunnels: readonly string[];
  /** Statuses of the error pages the proxy answered with itself, in order. */
  readonly errorPages: readonly number[];
  close(): Promise<void>;
}

const SQUID_DEFAULT_CONNECT_TIMEOUT_MS = 60_000;

/** An error page shaped like Squid's templates (title, reason, system message), shortened. */
function errorPage(status: number, code: string, errno: number, target: string, reason: string): Response {
  const body = `<!DOCTYPE html>\n<html><head><title>ERROR: The requested URL could not be retrieved</title></head>` +
    `<body><div id="titles"><h1>ERROR</h1><h2>The requested URL could not be retrieved</h2></div><hr>` +
    `<div id="content"><p>The following error was encountered while trying to retrieve the URL: ` +
    `<a href="https://${target}/">https://${target}/</a></p><blockquote id="error"><p><b>${reason}</b></p>` +
    `</blockquote><p id="sysmsg">The system returned: <i>(${errno})</i></p></div></body></html>\n`;
  return new Response(body, {
    status,
    headers: {
      "server": "squid/6.6",
      "mime-version": "1.0",
      "content-type": "text/html;charset=utf-8",
      "x-squid-error": `${code} ${errno}`,
      "vary": "Accept-Language",
      "content-language": "en",
    },
  });
}

/** What went wrong upstream, as Squid names it. */
function upstreamFailure(error: unknown, target: string): Response {
  // fetch says "fetch failed"; what failed is in its cause.
  const message = `${(error as Error)?.message ?? error} ${(error as Error)?.cause ?? ""}`;
  if ((error as Error)?.name === "TimeoutError") {
    return errorPage(504, "ERR_READ_TIMEOUT", 110, target, "Read Timeout");
  }
  if (/certificate|handshake/i.test(message)) {
    return errorPage(503, "ERR_SECURE_CONNECT_FAIL", 71, target, "Failed to establish a secure connection");
  }
  return errorPage(503, "ERR_CONNECT_FAIL", 111, target, "Connection to the server failed");
}

const HOP_BY_HOP = ["connection", "keep-alive", "transfer-encoding", "content-length"];

export function startBumpingProxy(options: BumpingProxyOptions): BumpingProxy {
  const timeoutMs = options.upstreamTimeoutMs ?? SQUID_DEFAULT_CONNECT_TIMEOUT_MS;
  const tunnels: string[] = [];
  const errorPages: number[] = [];
  const open = new Set<Deno.Conn>();
  // The decrypted side: which CONNECT target each relayed connection (by its local port) belongs to.
  const targetByPort = new Map<number, string>();
  const upstream = Deno.createHttpClient({ caCerts: [options.upstreamCaPem], poolMaxIdlePerHost: 0 });
  const answered = (response: Response) => {
    if (response.headers.has("x-squid-error")) errorPages.push(response.status);
    return response;
  };
  const relayRequest = async (request: Request, target: string): Promise<Response> => {
    const port = options.routes[target];
    if (port === undefined) return errorPage(503, "ERR_DNS_FAIL", 0, target, "Unable to determine IP address");
    const url = new URL(request.url);
    try {
      const headers = new Headers(request.headers);
      for (const name of HOP_BY_HOP) headers.delete(name);
      const reply = await fetch(`https://localhost:${port}${url.pathname}${url.search}`, {
        method: request.method,
        headers,
        body: request.method === "GET" || request.method === "HEAD" ? undefined : await request.arrayBuffer(),
        client: upstream,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const passed = new Headers(reply.headers);
      for (const name of HOP_BY_HOP) passed.delete(name);
      passed.set("via", "1.1 bumping-proxy (squid/6.6)");
      return new Response(await reply.arrayBuffer(), { status: reply.status, headers: passed });
    } catch (error) {
      return upstreamFailure(error, target);
    }
  };
  const terminator = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: options.ca.certPem, key: options.ca.keyPem, onListen() {} },
    async (request, info) => {
      const target = targetByPort.get(info.remoteAddr.port) ?? "unknown";
      return answered(await relayRequest(request, target));
    },
  );
  const encoder = new TextEncoder();
  const serve = async (conn: Deno.Conn) => {
    open.add(conn);
    let relay: Deno.Conn | undefined;
    try {
      const head = await readUntil(conn, "\r\n\r\n", 16384);
      const [method, target] = head.split(" ", 2);
      if (method !== "CONNECT") {
        await conn.write(encoder.encode("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"));
        return;
      }
      tunnels.push(target);
      await conn.write(encoder.encode("HTTP/1.1 200 Connection established\r\n\r\n"));
      relay = await Deno.connect({ hostname: "127.0.0.1", port: terminator.addr.port });
      open.add(relay);
      const relayPort = (relay.localAddr as Deno.NetAddr).port;
      targetByPort.set(relayPort, target);
      await Promise.allSettled([conn.readable.pipeTo(relay.writable), relay.readable.pipeTo(conn.writable)]);
      targetByPort.delete(relayPort);
    } catch {
      // the client went away
    } finally {
      for (const c of [conn, relay]) {
        if (c === undefined) continue;
        open.delete(c);
        closeQuietly(c);
      }
    }
  };
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    try {
      for await (const conn of listener) serve(conn);
    } catch {
      // closed
    }
  })();
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= (async () => {
      listener.close();
      await accepting;
      for (const conn of open) closeQuietly(conn);
      await terminator.shutdown();
      upstream.close();
    })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    tunnels,
    errorPages,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // closed by pipeTo already
  }
}
