/**
 * A regional ECS endpoint on loopback, behind a throw-away CA made at test time with the `openssl` CLI.
 * Each TCP connection meets the behaviour in force: the ECS front end's answer, a refusal (nothing
 * listens), a blackhole (accepted, never answered), a failing TLS handshake (a certificate the CA did not
 * sign), a reset, ECS's own 500, or a flapping cycle of these. Plus an HTTP CONNECT proxy that maps names
 * such as `ecs.eu-test-1.amazonaws.com:443` to loopback ports, as a corporate proxy in front of the region
 * would (one that only tunnels; sim/tls_bumping_proxy.ts is the kind that re-signs TLS).
 *
 * The answer is the ECS front end's, framed by sim/aws_protocols.ts as the ECS emulator frames it: ECS
 * speaks AWS JSON 1.1, and a request without a SigV4 signature (the probe's) gets HTTP 400 with the error
 * shape `{"__type":"MissingAuthenticationTokenException","message":"Missing Authentication Token"}`, an
 * `x-amzn-RequestId` header and `x-amzn-ErrorType`. Sources: the awsJson1_1 protocol's error serialization
 * (https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html#operation-error-serialization: the
 * `__type` member names the error shape), the AWS common errors (MissingAuthenticationToken: "The request
 * must contain either a valid (registered) AWS access key ID or X.509 certificate",
 * https://docs.aws.amazon.com/AmazonECS/latest/APIReference/CommonErrors.html), and ECS's 400 with a
 * RequestID and an error code for a bad token (keidarcy/e1s#367: `ListClusters, https response error
 * StatusCode: 400, RequestID: ..., api error UnrecognizedClientException`). Any other request (a GET, an
 * unknown target) gets `UnknownOperationException`, also with the markers.
 * @module
 */
import { join } from "node:path";
import { readUntil } from "../lib/network_sentry/probe.ts";
import { awsJsonService, type CallLog, ECS_PROTOCOL } from "./aws_protocols.ts";
import type { SimRequest, SimResponse } from "./http_server.ts";

/**
 * `server-error`: ECS itself fails the call with HTTP 500 `ServerException` (documented for every ECS
 * action, https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ListClusters.html#API_ListClusters_Errors),
 * still with the AWS markers: the front end answered, so the region counts as reachable.
 */
export type EndpointBehaviour = "answer" | "refuse" | "blackhole" | "tls-fail" | "reset" | "server-error";

export interface TestCa {
  /** PEM file of the CA, for `--ca-file`. */
  readonly caFile: string;
  readonly caPem: string;
  /** Server certificate and key signed by the CA, valid for the given names, localhost and 127.0.0.1. */
  readonly certPem: string;
  readonly keyPem: string;
  /** A self-signed certificate for the same names, which no client trusts. */
  readonly untrustedCertPem: string;
  readonly untrustedKeyPem: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" }).output();
  } catch (error) {
    throw new Error(`the endpoint emulator needs the openssl CLI: ${(error as Error).message}`);
  }
  if (!output.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
}

/** Makes a CA and two server certificates (one signed by it, one not) in `dir`. */
export async function createTestCa(dir: string, hostnames: readonly string[] = []): Promise<TestCa> {
  const names = ["localhost", ...hostnames];
  const san = [...names.map((n) => `DNS:${n}`), "IP:127.0.0.1"].join(",");
  await Deno.writeTextFile(
    join(dir, "server.cnf"),
    `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`,
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=sentry test CA",
  ], dir);
  await openssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", `/CN=${names[0]}`], dir);
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "server.cnf",
    ],
    dir,
  );
  await openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "untrusted.key",
      "-out",
      "untrusted.pem",
      "-days",
      "2",
      "-subj",
      `/CN=${names[0]}`,
      "-addext",
      `subjectAltName=${san}`,
    ],
    dir,
  );
  const read = (name: string) => Deno.readTextFile(join(dir, name));
  return {
    caFile: join(dir, "ca.pem"),
    caPem: await read("ca.pem"),
    certPem: await read("server.pem"),
    keyPem: await read("server.key"),
    untrustedCertPem: await read("untrusted.pem"),
    untrustedKeyPem: await read("untrusted.key"),
  };
}

export interface RegionEndpoint extends AsyncDisposable {
  /** `https://localhost:<port>` */
  readonly url: string;
  readonly port: number;
  /** The ECS operations asked for (the `X-Amz-Target`s), answered or not. */
  readonly calls: CallLog;
  /**
   * Every new connection meets `behaviour`. A refusal closes the listening socket until changed, and resolves
   * only once the socket is really closed: until then the kernel would still accept connections into the backlog.
   */
  set(behaviour: EndpointBehaviour): Promise<void>;
  /** Connection n meets `cycle[n % cycle.length]`; refusals cannot flap (they need a closed port). */
  flap(cycle: readonly Exclude<EndpointBehaviour, "refuse">[]): Promise<void>;
  close(): Promise<void>;
}

async function simRequestOf(request: Request): Promise<SimRequest> {
  const url = new URL(request.url);
  return {
    method: request.method,
    path: url.pathname,
    query: url.searchParams,
    headers: Object.fromEntries(request.headers),
    body: await request.text(),
  };
}

export function startRegionEndpoint(ca: TestCa): RegionEndpoint {
  // The ECS front end as the probe meets it: an operation it may call once signed, and nothing else.
  const ecsFrontEnd = awsJsonService({ ...ECS_PROTOCOL, operations: { ListClusters: () => ({ clusterArns: [] }) } });
  const backend = (cert: string, key: string, answer: (request: SimRequest) => SimResponse | Promise<SimResponse>) =>
    Deno.serve(
      { hostname: "127.0.0.1", port: 0, cert, key, onListen() {} },
      async (request) => {
        const response = await answer(await simRequestOf(request));
        return new Response(response.body, { status: response.status, headers: response.headers });
      },
    );
  const trusted = backend(ca.certPem, ca.keyPem, ecsFrontEnd.handle);
  const untrusted = backend(ca.untrustedCertPem, ca.untrustedKeyPem, ecsFrontEnd.handle);
  const failing = backend(ca.certPem, ca.keyPem, ecsFrontEnd.renderFaults.serverError);
  const held = new Set<Deno.Conn>();
  let cycle: readonly EndpointBehaviour[] = ["answer"];
  let connections = 0;
  let listener: Deno.Listener | undefined = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;

  const relay = async (conn: Deno.Conn, to: Deno.HttpServer<Deno.NetAddr>) => {
    const upstream = await Deno.connect({ hostname: "127.0.0.1", port: to.addr.port });
    held.add(upstream);
    await Promise.allSettled([conn.readable.pipeTo(upstream.writable), upstream.readable.pipeTo(conn.writable)]);
    held.delete(upstream);
  };
  const handle = (conn: Deno.Conn) => {
    const behaviour = cycle[connections++ % cycle.length];
    held.add(conn);
    const done = () => held.delete(conn);
    if (behaviour === "blackhole") return;
    if (behaviour === "reset") {
      resetOnceSpokenTo(conn).finally(done);
      return;
    }
    const to = behaviour === "tls-fail" ? untrusted : behaviour === "server-error" ? failing : trusted;
    relay(conn, to).catch(() => {}).finally(done);
  };
  const accept = async (active: Deno.Listener) => {
    try {
      for await (const conn of active) handle(conn);
    } catch {
      // the listener was closed
    }
  };
  // Deno frees the socket only when the pending accept has settled, not when close() returns.
  let accepting = accept(listener);

  const set = async (next: readonly EndpointBehaviour[]) => {
    cycle = next;
    if (next.includes("refuse")) {
      listener?.close();
      listener = undefined;
      await accepting;
    } else if (listener === undefined) {
      listener = Deno.listen({ hostname: "127.0.0.1", port });
      accepting = accept(listener);
    }
  };
  const close = async () => {
    listener?.close();
    listener = undefined;
    for (const conn of held) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    await Promise.all([trusted.shutdown(), untrusted.shutdown(), failing.shutdown()]);
  };
  return {
    url: `https://localhost:${port}`,
    port,
    calls: ecsFrontEnd.calls,
    set: (behaviour) => set([behaviour]),
    flap: (next) => set(next),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * A firewall or middlebox that cuts the flow mid-handshake: the client's first bytes (its TLS ClientHello)
 * arrive, one is read, and closing a socket with unread data makes the kernel send an RST, not a FIN
 * (RFC 2525 section 2.17, "Failure to RST on close with data pending", and Linux tcp_close()).
 */
async function resetOnceSpokenTo(conn: Deno.Conn): Promise<void> {
  try {
    await conn.read(new Uint8Array(1));
  } catch {
    // the client gave up first
  }
  try {
    conn.close();
  } catch {
    // already closed
  }
}

export interface ConnectProxy extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** `CONNECT` targets asked for, in order, including ones refused. */
  readonly tunnels: readonly string[];
  /** `Proxy-Authorization` headers seen, decoded (`user:password`). */
  readonly credentials: readonly string[];
  close(): Promise<void>;
}

/** An HTTP CONNECT proxy; `routes` maps `host:port` to a loopback port, anything else gets 502. */
export function startConnectProxy(routes: Readonly<Record<string, number>>): ConnectProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tunnels: string[] = [];
  const credentials: string[] = [];
  const open = new Set<Deno.Conn>();
  const encoder = new TextEncoder();
  const serve = async (conn: Deno.Conn) => {
    open.add(conn);
    try {
      const head = await readUntil(conn, "\r\n\r\n", 16384);
      const [method, target] = head.split(" ", 2);
      tunnels.push(target);
      const auth = head.match(/^proxy-authorization: basic (\S+)\r?$/im)?.[1];
      if (auth) credentials.push(atob(auth));
      const routed = routes[target];
      if (method !== "CONNECT" || routed === undefined) {
        await conn.write(encoder.encode("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"));
        return;
      }
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: routed }).catch(() => undefined);
      if (upstream === undefined) {
        await conn.write(encoder.encode("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"));
        return;
      }
      open.add(upstream);
      await conn.write(encoder.encode("HTTP/1.1 200 Connection established\r\n\r\n"));
      await Promise.allSettled([conn.readable.pipeTo(upstream.writable), upstream.readable.pipeTo(conn.writable)]);
      open.delete(upstream);
    } catch {
      // the client went away
    } finally {
      open.delete(conn);
      try {
        conn.close();
      } catch {
        // closed by pipeTo already
      }
    }
  };
  (async () => {
    try {
      for await (const conn of listener) serve(conn);
    } catch {
      // closed
    }
  })();
  let closed = false;
  const close = () => {
    if (closed) return Promise.resolve();
    closed = true;
    listener.close();
    for (const conn of open) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    return Promise.resolve();
  };
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    tunnels,
    credentials,
    close,
    [Symbol.asyncDispose]: close,
  };
}
