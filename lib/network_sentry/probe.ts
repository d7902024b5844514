/**
 * The connectivity probe: one unsigned ECS API call (`ListClusters`, AWS JSON 1.1) to the regional
 * endpoint over a verified TLS connection, direct or tunnelled through an HTTP proxy with CONNECT, all
 * within one hard deadline. The region is reachable when the ECS front end itself answered: AWS refuses
 * the unsigned call with its own error shape (`__type`, e.g. `MissingAuthenticationTokenException`) and an
 * `x-amzn-RequestId` header, and a 5xx of its own carries the same markers. An HTTP answer without them
 * comes from something in between (a TLS-inspecting proxy's error page once its upstream is gone) and is
 * `proxy-error`; everything else is a failure with a reason an operator can act on.
 *
 * Written on Deno.connect/startTls rather than fetch: fetch reads the proxy from the environment on its
 * own and cannot be told to go direct, and its errors do not say which stage failed.
 * @module
 */
import { ConfigError } from "../config.ts";
import { VERSION } from "../version.ts";

/**
 * `proxy`: the proxy refused the tunnel or could not be reached. `proxy-error`: an HTTP answer that is
 * not ECS's (no AWS markers), such as the 502/503/504 page of a proxy whose upstream is gone.
 */
export type ProbeFailureReason =
  | "dns"
  | "refused"
  | "timeout"
  | "tls"
  | "reset"
  | "proxy"
  | "proxy-error"
  | "protocol";

export type ProbeResult =
  | {
    readonly ok: true;
    readonly status: number;
    /** The AWS error code ECS answered with (`MissingAuthenticationTokenException` for the unsigned call). */
    readonly awsError: string;
    readonly latencyMs: number;
  }
  | {
    readonly ok: false;
    readonly reason: ProbeFailureReason;
    readonly detail: string;
    readonly latencyMs: number;
  };

export interface ProbeTarget {
  /** https:// URL of an ECS API endpoint (regional, FIPS or an interface VPC endpoint); its path is requested. */
  readonly endpoint: string;
  readonly timeoutMs: number;
  /** Extra trusted roots (PEM), besides the built-in ones. */
  readonly caCerts?: readonly string[];
  /** http:// proxy to tunnel through, already filtered by NO_PROXY. */
  readonly proxy?: string;
}

/**
 * The extra trusted roots of `--ca-file`, read once when the daemon starts (settings do no I/O). A file
 * that cannot be read or holds no certificate is a configuration error naming the flag.
 */
export async function readCaFile(path: string): Promise<string> {
  let pem: string;
  try {
    pem = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError("--ca-file", path, (error as Error).message);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new ConfigError("--ca-file", path, "holds no PEM certificate");
  }
  return pem;
}

type Stage = "connect" | "proxy" | "tls" | "answer";

/** A failure already classified by the stage that raised it. */
class ProbeFailure extends Error {
  constructor(readonly reason: ProbeFailureReason, detail: string) {
    super(detail);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Probes once. Never throws for network trouble; rethrows `signal`'s reason when it aborts (shutdown). */
export async function probeEndpoint(target: ProbeTarget, signal?: AbortSignal): Promise<ProbeResult> {
  const started = performance.now();
  const deadline = AbortSignal.timeout(target.timeoutMs);
  const abort = signal ? AbortSignal.any([signal, deadline]) : deadline;
  const opened = new OpenedConnections();
  const progress = { stage: "connect" as Stage };
  const aborted = new Promise<never>((_, reject) => {
    const fail = () => reject(new ProbeFailure("timeout", `no answer within ${target.timeoutMs} ms`));
    if (abort.aborted) fail();
    else abort.addEventListener("abort", fail, { once: true });
  });
  aborted.catch(() => {});
  try {
    const answer = await Promise.race([exchange(target, abort, opened, progress), aborted]);
    return { ok: true, ...answer, latencyMs: performance.now() - started };
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    const failure = error instanceof ProbeFailure ? error : classify(error, progress.stage);
    // Where a timeout or a cut connection struck is what tells a blackhole, a proxy and a middlebox apart.
    const staged = failure.reason === "timeout" || failure.reason === "reset";
    const detail = staged ? `${failure.message} (during ${progress.stage})` : failure.message;
    return { ok: false, reason: failure.reason, detail, latencyMs: performance.now() - started };
  } finally {
    opened.closeAll();
  }
}

/**
 * The connections of one probe. The exchange may still be running when the deadline has decided the
 * probe (a connect or handshake that finishes late): whatever it opens after that is closed at once, and
 * closing what it had opened ends its pending reads, so nothing outlives the probe.
 */
class OpenedConnections {
  #open: Deno.Conn[] = [];
  #closed = false;

  add<C extends Deno.Conn>(conn: C): C {
    if (this.#closed) {
      closeQuietly(conn);
      throw new ProbeFailure("timeout", "the probe already ended");
    }
    this.#open.push(conn);
    return conn;
  }

  closeAll(): void {
    this.#closed = true;
    for (const conn of this.#open) closeQuietly(conn);
    this.#open = [];
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed (startTls takes over the TCP connection it wraps)
  }
}

async function exchange(
  target: ProbeTarget,
  abort: AbortSignal,
  opened: OpenedConnections,
  progress: { stage: Stage },
): Promise<{ status: number; awsError: string }> {
  const url = new URL(target.endpoint);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || 443);
  let conn: Deno.Conn;
  if (target.proxy) {
    progress.stage = "proxy";
    const proxy = new URL(target.proxy);
    const proxyHost = proxy.hostname.replace(/^\[|\]$/g, "");
    conn = opened.add(
      await Deno.connect({ hostname: proxyHost, port: Number(proxy.port || 80), signal: abort }).catch((error) => {
        throw new ProbeFailure("proxy", `proxy ${proxy.host}: ${(error as Error).message}`);
      }),
    );
    await openTunnel(conn, url.host.includes(":") ? url.host : `${url.host}:${port}`, proxy);
  } else {
    conn = opened.add(await Deno.connect({ hostname: host, port, signal: abort }));
  }
  progress.stage = "tls";
  const tls = opened.add(
    await Deno.startTls(conn as Deno.TcpConn, {
      hostname: host,
      caCerts: target.caCerts ? [...target.caCerts] : undefined,
    }),
  );
  await tls.handshake();
  progress.stage = "answer";
  await writeAll(tls, encoder.encode(ecsRequest(url)));
  const head = await readUntil(tls, "\r\n\r\n", 16384);
  const [statusLine, ...headerLines] = head.split("\r\n");
  const status = statusLine.match(/^HTTP\/\d(?:\.\d)? (\d{3})/)?.[1];
  if (status === undefined) {
    throw new ProbeFailure("protocol", `not an HTTP answer: ${JSON.stringify(statusLine.slice(0, 60))}`);
  }
  const headers = new Map(headerLines.map((line) => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const;
  }));
  return judgeAnswer(Number(status), headers, await readBody(tls, bodyBytesToRead(headers)));
}

/** Enough of a body for an AWS error shape or a proxy page's title; the rest is not read. */
const BODY_LIMIT = 4096;

/**
 * A delimited body up to the limit. An undelimited one is read to its end only from ECS (which closes,
 * as asked): a proxy that keeps its page open must not turn a proxy-error into a timeout.
 */
function bodyBytesToRead(headers: ReadonlyMap<string, string>): number {
  const length = Number(headers.get("content-length") ?? NaN);
  if (!Number.isNaN(length)) return Math.min(length, BODY_LIMIT);
  return headers.has("x-amzn-requestid") ? BODY_LIMIT : 0;
}

/**
 * `ListClusters` without a signature, as the AWS JSON 1.1 protocol frames a call (`POST /`, the
 * `X-Amz-Target` of ECS's service, `application/x-amz-json-1.1`): cheap, read-only, and refused by the
 * ECS front end itself before anything runs, so no credentials are ever needed or sent.
 */
function ecsRequest(url: URL): string {
  const body = "{}";
  return `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
    `User-Agent: ecs-network-sentry/${VERSION}\r\nAccept: application/json\r\n` +
    `X-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters\r\n` +
    `Content-Type: application/x-amz-json-1.1\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
}

async function readBody(conn: Deno.Conn, limit: number): Promise<string> {
  const buffer = new Uint8Array(limit);
  let length = 0;
  while (length < limit) {
    const n = await conn.read(buffer.subarray(length)).catch(() => null);
    if (n === null) break;
    length += n;
  }
  return decoder.decode(buffer.subarray(0, length));
}

/**
 * ECS answered when the reply has AWS's request id and an AWS error code: the `X-Amzn-ErrorType` header or
 * the body's `__type` (AWS JSON 1.1 error serialization; a `namespace#` prefix and a `:url` suffix are
 * dropped, as the SDKs do). Anything else was answered by something in between.
 */
function judgeAnswer(
  status: number,
  headers: ReadonlyMap<string, string>,
  body: string,
): { status: number; awsError: string } {
  const code = headers.get("x-amzn-errortype") ?? body.match(/"__type"\s*:\s*"([^"]+)"/)?.[1];
  if (headers.has("x-amzn-requestid") && code !== undefined) {
    return { status, awsError: code.split(":")[0].replace(/^.*#/, "") };
  }
  const clues = [
    headers.get("server") && `server ${headers.get("server")}`,
    headers.get("x-squid-error") && `X-Squid-Error ${headers.get("x-squid-error")}`,
    headers.get("via") && `via ${headers.get("via")}`,
    body.match(/<title>([^<]{1,120})<\/title>/i)?.[1].trim(),
  ].filter(Boolean);
  throw new ProbeFailure(
    "proxy-error",
    `HTTP ${status} without the AWS markers (x-amzn-RequestId, __type): answered by something in between, ` +
      `not ECS${clues.length ? ` (${clues.join("; ")})` : ""}`,
  );
}

async function openTunnel(conn: Deno.Conn, authority: string, proxy: URL): Promise<void> {
  const credentials = proxy.username
    ? `Proxy-Authorization: Basic ${
      btoa(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`)
    }\r\n`
    : "";
  await writeAll(conn, encoder.encode(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${credentials}\r\n`));
  const head = await readUntil(conn, "\r\n\r\n", 16384).catch((error) => {
    throw new ProbeFailure("proxy", `proxy ${proxy.host} closed the tunnel: ${(error as Error).message}`);
  });
  const statusLine = head.split("\r\n", 1)[0];
  if (!/^HTTP\/\d(?:\.\d)? 200\b/.test(statusLine)) {
    throw new ProbeFailure("proxy", `proxy ${proxy.host} refused CONNECT ${authority}: ${statusLine}`);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/**
 * Reads byte by byte up to and including `marker` and returns what came before it, so nothing past it
 * (TLS records after a proxy's answer) is consumed. Throws when the peer closes first.
 */
export async function readUntil(conn: Deno.Conn, marker: string, limit: number): Promise<string> {
  const buffer = new Uint8Array(limit);
  const one = new Uint8Array(1);
  let length = 0;
  while (length < limit) {
    const n = await conn.read(one);
    if (n === null) throw new Error("connection closed before an answer");
    buffer[length++] = one[0];
    const text = decoder.decode(buffer.subarray(Math.max(0, length - marker.length), length));
    if (text === marker) return decoder.decode(buffer.subarray(0, length - marker.length));
  }
  throw new Error(`no ${JSON.stringify(marker)} within ${limit} bytes`);
}

function classify(error: unknown, stage: Stage): ProbeFailure {
  const message = (error as Error)?.message ?? String(error);
  if (error instanceof Deno.errors.ConnectionRefused) return new ProbeFailure("refused", message);
  if (stage === "connect" && /lookup address|name or service|nodename|name resolution|dns/i.test(message)) {
    return new ProbeFailure("dns", message);
  }
  // Before the TLS check: a connection cut during the handshake is the network's doing, not a certificate's.
  if (
    error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.BrokenPipe || /closed before an answer|unexpected end of file/i.test(message)
  ) {
    return new ProbeFailure("reset", message);
  }
  if (stage === "tls") return new ProbeFailure("tls", message);
  return new ProbeFailure(stage === "proxy" ? "proxy" : "protocol", message);
}
