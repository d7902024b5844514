/**
 * Envoy emulator: the admin API the App Mesh helper uses, answering with Envoy's real status codes and
 * bodies, plus an ingress listener that holds real TCP connections so that the
 * `listener.<address>.downstream_cx_active` gauge counts what a client really has open and
 * `downstream_cx_total` every connection the listener accepted, however briefly it lived.
 *
 * Admin endpoints: `/ready`, `/server_info` (the four states), `POST /healthcheck/fail` and
 * `/healthcheck/ok`, `POST /drain_listeners` (`graceful`, `inboundonly`, `skip_exit`),
 * `/stats?format=json|text&filter=<regex>`. A mutating endpoint asked with another method answers
 * 405 `Method GET not allowed, POST required.`; an unknown path 404 `invalid path. admin commands are: ...`.
 *
 * Ingress, like an HTTP connection manager with the default drain type: once the health check has
 * failed or a drain has started, every response carries `Connection: close`; a graceful drain also
 * closes the connections that are idle at that moment (as Envoy's drain notification does), all at
 * once like `--drain-strategy immediate`, or spread over `drainTimeMs` like the default `gradual`
 * strategy over `--drain-time-s`. `GET /slow?ms=N` answers after N ms, to hold a request in flight.
 * @module
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Faults } from "./faults.ts";
import { json, type SimRequest, type SimResponse, type SimServer, startSimServer } from "./http_server.ts";

/** `/server_info` states. `/ready` answers 200 only for `LIVE`, else 503 with the state. */
export type EnvoyState = "LIVE" | "DRAINING" | "PRE_INITIALIZING" | "INITIALIZING";

/** Envoy's init manager states; with the health check flag they give the `/server_info` state. */
export type EnvoyInitState = "PRE_INITIALIZING" | "INITIALIZING" | "INITIALIZED";

export interface AdminCall {
  readonly method: string;
  /** Path and query as sent, e.g. `/drain_listeners?graceful&inboundonly`. */
  readonly target: string;
  readonly status: number;
  /** Epoch milliseconds. */
  readonly at: number;
}

export interface EnvoyEmulatorOptions {
  readonly init?: EnvoyInitState;
  /** The ingress listener's address as written in stat names. */
  readonly ingressStatAddress?: string;
  readonly version?: string;
  /** Faults of the admin API (the ingress listener has none). */
  readonly faults?: Faults;
  /**
   * `gradual` drain: a graceful drain closes the idle connections one by one, evenly spread over this
   * many milliseconds. Unset or 0: all at once, as `--drain-strategy immediate`.
   */
  readonly drainTimeMs?: number;
  /** `false`: an older Envoy whose admin API has no `/drain_listeners` (it answers 404). */
  readonly drainListeners?: boolean;
}

export interface EnvoyEmulator extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: what `ENVOY_ADMIN_URL` is set to. */
  readonly adminUrl: string;
  readonly admin: SimServer;
  /** `http://127.0.0.1:<port>` of the ingress listener. */
  readonly ingressUrl: string;
  readonly ingressPort: number;
  init: EnvoyInitState;
  healthcheckFailed: boolean;
  /** What `/ready` and `/server_info` report. */
  readonly state: EnvoyState;
  /** Whether the inbound listeners are draining. */
  readonly draining: boolean;
  /** TCP connections open on the ingress listener right now. */
  readonly activeIngressConnections: number;
  /** Every admin call that reached the admin handlers, in order (calls answered by a fault excluded). */
  readonly calls: readonly AdminCall[];
  close(): Promise<void>;
}

type AdminHandler = readonly [path: string, mutates: boolean, help: string];

const ADMIN_HANDLERS: readonly AdminHandler[] = [
  ["/drain_listeners", true, "drain listeners"],
  ["/healthcheck/fail", true, "cause the server to fail health checks"],
  ["/healthcheck/ok", true, "cause the server to pass health checks"],
  ["/ready", false, "print server state, return 200 if LIVE, otherwise return 503"],
  ["/server_info", false, "print server version/status information"],
  ["/stats", false, "print server stats"],
];

const STATE_GAUGE: Record<EnvoyState, number> = { LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3 };

export async function startEnvoyEmulator(options: EnvoyEmulatorOptions = {}): Promise<EnvoyEmulator> {
  const startedAt = Date.now();
  const ingressAddress = options.ingressStatAddress ?? "0.0.0.0_15000";
  const version = options.version ?? "0000000000000000000000000000000000000000/1.34.1/Clean/RELEASE/BoringSSL";
  const calls: AdminCall[] = [];
  const state = { init: options.init ?? "INITIALIZED" as EnvoyInitState, healthcheckFailed: false };
  const drainTimeMs = options.drainTimeMs ?? 0;
  const ingress = await startIngress(() => state.healthcheckFailed, drainTimeMs);
  const handlers = options.drainListeners === false
    ? ADMIN_HANDLERS.filter(([path]) => path !== "/drain_listeners")
    : ADMIN_HANDLERS;

  const serverState = (): EnvoyState =>
    state.init === "INITIALIZED" ? (state.healthcheckFailed ? "DRAINING" : "LIVE") : state.init;

  const stats = (): Array<[string, number]> => {
    const active = ingress.active();
    const list: Array<[string, number]> = [
      ["http.admin.downstream_cx_active", 1],
      ["http.ingress.downstream_cx_active", active],
      [`listener.${ingressAddress}.downstream_cx_active`, active],
      [`listener.${ingressAddress}.downstream_cx_total`, ingress.total()],
      [`listener.${ingressAddress}.worker_0.downstream_cx_active`, active],
      [`listener.${ingressAddress}.worker_0.downstream_cx_total`, ingress.total()],
      ["listener.0.0.0.0_15001.downstream_cx_active", 0],
      ["listener.0.0.0.0_15001.downstream_cx_total", 0],
      ["listener.0.0.0.0_15001.worker_0.downstream_cx_active", 0],
      ["listener.admin.downstream_cx_active", 1],
      ["server.live", serverState() === "LIVE" ? 1 : 0],
      ["server.state", STATE_GAUGE[serverState()]],
      ["server.total_connections", active],
    ];
    return list.sort(([a], [b]) => a.localeCompare(b));
  };

  const handle = (request: SimRequest): SimResponse => {
    const handler = handlers.find(([path]) => path === request.path);
    if (!handler) return { status: 404, body: `invalid path. ${help(handlers)}` };
    if (handler[1] && request.method !== "POST") {
      return { status: 405, body: `Method ${request.method} not allowed, POST required.` };
    }
    switch (request.path) {
      case "/ready":
        return { status: serverState() === "LIVE" ? 200 : 503, body: `${serverState()}\n` };
      case "/server_info":
        return json(200, serverInfo(serverState(), version, startedAt, drainTimeMs));
      case "/healthcheck/fail":
        state.healthcheckFailed = true;
        return { status: 200, body: "OK\n" };
      case "/healthcheck/ok":
        state.healthcheckFailed = false;
        return { status: 200, body: "OK\n" };
      case "/drain_listeners":
        return drainListeners(request.query);
      default:
        return renderStats(request.query, stats());
    }
  };

  const drainListeners = (query: URLSearchParams): SimResponse => {
    const graceful = query.has("graceful");
    if (query.has("skip_exit") && !graceful) return { status: 400, body: "skip_exit requires graceful\n" };
    // The emulator's only inbound listener is the ingress one, so `inboundonly` drains the same set.
    if (graceful) ingress.drainGracefully();
    else ingress.stopAccepting();
    return { status: 200, body: "OK\n" };
  };

  const admin = await startSimServer({
    faults: options.faults ?? new Faults(),
    handle: (request) => {
      const response = handle(request);
      const query = request.query.toString().replace(/=(?=&|$)/g, "");
      calls.push({
        method: request.method,
        target: request.path + (query ? `?${query}` : ""),
        status: response.status,
        at: Date.now(),
      });
      return response;
    },
  });

  const close = async () => {
    await Promise.all([admin.close(), ingress.close()]);
  };
  return {
    adminUrl: admin.url,
    admin,
    ingressUrl: `http://127.0.0.1:${ingress.port}`,
    ingressPort: ingress.port,
    get init() {
      return state.init;
    },
    set init(value: EnvoyInitState) {
      state.init = value;
    },
    get healthcheckFailed() {
      return state.healthcheckFailed;
    },
    set healthcheckFailed(value: boolean) {
      state.healthcheckFailed = value;
    },
    get state() {
      return serverState();
    },
    get draining() {
      return ingress.draining();
    },
    get activeIngressConnections() {
      return ingress.active();
    },
    calls,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function help(handlers: readonly AdminHandler[]): string {
  const lines = handlers.map(([path, mutates, text]) => `  ${path}${mutates ? " (POST)" : ""}: ${text}`);
  return `admin commands are:\n${lines.join("\n")}\n`;
}

function serverInfo(state: EnvoyState, version: string, startedAt: number, drainTimeMs: number) {
  const uptime = `${Math.floor((Date.now() - startedAt) / 1000)}s`;
  const drain = drainTimeMs > 0
    ? { drain_time: `${drainTimeMs / 1000}s`, drain_strategy: "Gradual" }
    : { drain_time: "600s", drain_strategy: "Immediate" };
  return {
    version,
    state,
    hot_restart_version: "11.104",
    command_line_options: { concurrency: 1, mode: "Serve", ...drain },
    uptime_current_epoch: uptime,
    uptime_all_epochs: uptime,
    node: { id: "emulated-envoy", cluster: "emulated" },
  };
}

function renderStats(query: URLSearchParams, all: Array<[string, number]>): SimResponse {
  let pattern: RegExp | undefined;
  const filter = query.get("filter");
  if (filter !== null) {
    try {
      pattern = new RegExp(filter);
    } catch {
      return { status: 400, body: "Invalid re2 regex" };
    }
  }
  // RE2 partial match, like Envoy's `filter`.
  const selected = all.filter(([name]) => pattern?.test(name) ?? true);
  const format = query.get("format") ?? "text";
  if (format === "json") return json(200, { stats: selected.map(([name, value]) => ({ name, value })) });
  if (format === "text") return { status: 200, body: selected.map(([name, value]) => `${name}: ${value}\n`).join("") };
  return { status: 400, body: "usage: /stats?format=(html|active-html|json|prometheus|text)\n\n" };
}

interface Ingress {
  readonly port: number;
  active(): number;
  total(): number;
  draining(): boolean;
  drainGracefully(): void;
  stopAccepting(): void;
  close(): Promise<void>;
}

/** The ingress listener: real TCP connections, each known with its number of requests in flight. */
async function startIngress(healthcheckFailed: () => boolean, drainTimeMs: number): Promise<Ingress> {
  const inFlight = new Map<Socket, number>();
  const drainTimers = new Set<ReturnType<typeof setTimeout>>();
  let total = 0;
  let draining = false;
  const drainClose = () => draining || healthcheckFailed();
  const server = http.createServer(async (req, res) => {
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    res.on("close", () => {
      if (inFlight.has(socket)) inFlight.set(socket, inFlight.get(socket)! - 1);
    });
    const url = new URL(req.url ?? "/", "http://ingress");
    if (url.pathname === "/slow") await new Promise((r) => setTimeout(r, Number(url.searchParams.get("ms") ?? 0)));
    const body = "served by the emulated Envoy ingress\n";
    const headers: Record<string, string> = { "content-type": "text/plain", "content-length": String(body.length) };
    if (drainClose()) headers.connection = "close";
    res.writeHead(200, headers);
    res.end(body);
  });
  // Envoy keeps idle downstream connections for an hour by default; Node's 5 s would close them for us.
  server.keepAliveTimeout = 0;
  // Every accepted socket, even one whose client has already closed it: Envoy counts accepts too.
  server.on("connection", (socket: Socket) => {
    total++;
    inFlight.set(socket, 0);
    socket.on("close", () => inFlight.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  const stopAccepting = () => {
    closed ??= new Promise<void>((resolve) => server.close(() => resolve()));
    return closed;
  };
  return {
    port,
    active: () => inFlight.size,
    total: () => total,
    draining: () => draining,
    drainGracefully() {
      draining = true;
      const idle = [...inFlight].filter(([, requests]) => requests === 0).map(([socket]) => socket);
      // A connection busy when its turn comes is left alone: its answer carries `Connection: close`.
      const closeIfIdle = (socket: Socket) => {
        if (inFlight.get(socket) === 0) socket.destroy();
      };
      idle.forEach((socket, index) => {
        if (drainTimeMs <= 0) {
          closeIfIdle(socket);
          return;
        }
        const timer = setTimeout(() => {
          drainTimers.delete(timer);
          closeIfIdle(socket);
        }, drainTimeMs * (index + 1) / idle.length);
        drainTimers.add(timer);
      });
    },
    stopAccepting() {
      void stopAccepting();
    },
    async close() {
      for (const timer of drainTimers) clearTimeout(timer);
      for (const socket of inFlight.keys()) socket.destroy();
      await stopAccepting();
    },
  };
}
