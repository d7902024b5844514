/**
 * Envoy emulator: the admin API the App Mesh helper uses, and an ingress listener that holds real TCP
 * connections, both behaving as Envoy's source says (each behaviour cites its file, paths as in
 * github.com/envoyproxy/envoy). Where Envoy is unkind to a drain, so is the emulator, by default.
 *
 * Admin (source/server/admin/admin.cc): handlers matched on the exact path; a state-changing one asked
 * with another method than POST answers 405 `Method GET not allowed, POST required.`; an unknown path
 * 404 `invalid path. admin commands are: ...`; `/` is the HTML home page, for any method. Served on
 * TCP, or on a unix socket as App Mesh's `ENVOY_ADMIN_MODE=uds` does (`/tmp/envoy_admin.sock`).
 *
 * Ingress (source/common/http/conn_manager_impl.cc, HTTP/1.1): a connection is told to close only in
 * a response, `Connection: close` when the drain decision says so; an idle keep-alive connection is
 * never closed by a drain (envoy issue 42305, open: "Envoy only sending `Connection: CLOSE` on HTTP1,
 * idle connection will be Established after `idle_timeout`"). `GET /slow?ms=N` answers after N ms.
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

/** `--drain-strategy`, as `/server_info` writes it. */
export type DrainStrategy = "Gradual" | "Immediate";

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
   * `--drain-time-s`, in ms so that tests can scale it down. Envoy's default is 600 s; App Mesh's and
   * Service Connect's agent sets it from `LISTENER_DRAIN_WAIT_TIME_S` (20 s by default).
   */
  readonly drainTimeMs?: number;
  /** `--drain-strategy` (Envoy's default `Gradual`). */
  readonly drainStrategy?: DrainStrategy;
  /** The random source of the gradual drain decision, in [0, 1) (tests make it certain). */
  readonly random?: () => number;
  /** `false`: an older Envoy whose admin API has no `/drain_listeners` (it answers 404). */
  readonly drainListeners?: boolean;
  /** `false`: an Envoy older than 1.29, whose `/drain_listeners` ignores `skip_exit` (an unknown parameter). */
  readonly skipExit?: boolean;
  /** Serve the admin API on this unix socket instead of TCP. */
  readonly adminSocketPath?: string;
  /** `stats_flush_interval` (Envoy's default 5 s): how often the `server.*` gauges are set. */
  readonly statsFlushIntervalMs?: number;
  /**
   * The bootstrap's `node.id`, as `/server_info` reports it. App Mesh's agent uses the virtual node's or
   * gateway's ARN (APPMESH_RESOURCE_ARN); for ECS Service Connect it is the service's task set ARN,
   * `arn:aws:ecs:<region>:<account>:task-set/<cluster>/<service>/ecs-svc/<id>`
   * (aws/amazon-ecs-service-connect-agent agent/envoy_bootstrap/envoy_bootstrap.go, `appendStats`).
   */
  readonly nodeId?: string;
  /**
   * The host's wall clock, ms since the epoch (default `Date.now`). Envoy computes its uptime on it
   * (source/server/admin/server_info_handler.cc `handlerServerInfo`: `systemTime()` minus the epoch's start
   * time; source/server/server.cc `updateServerStats`: `time(nullptr) - original_start_time_`), so a step of
   * the host's clock moves its uptime by the step: back past its start, `uptime_current_epoch` is negative
   * (its ASSERT is compiled out of release builds) and the `server.uptime` gauge, a uint64, wraps. A test that
   * steps a role's clock passes the same clock here: every container of a task reads the host's one CLOCK_REALTIME.
   */
  readonly wallClock?: () => number;
}

export interface EnvoyEmulator extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` or `unix:///path`: what `ENVOY_ADMIN_URL` is set to. */
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
  /** Whether the ingress listener accepts connections (false once stopped). */
  readonly accepting: boolean;
  /** TCP connections open on the ingress listener right now. */
  readonly activeIngressConnections: number;
  /** Every admin call that reached the admin handlers, in order (calls answered by a fault excluded). */
  readonly calls: readonly AdminCall[];
  /**
   * The agent restarts a crashed Envoy: its connections die, it comes back LIVE on the same ports with
   * its health check passing, no drain, and every counter at zero (a new process, not a hot restart).
   */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** [path, mutates server state (POST only), help text], from the handler list in source/server/admin/admin.cc. */
type AdminHandler = readonly [path: string, mutates: boolean, help: string];

const ADMIN_HANDLERS: readonly AdminHandler[] = [
  ["/", false, "Admin home page"],
  ["/clusters", false, "upstream cluster status"],
  ["/config_dump", false, "dump current Envoy configs (experimental)"],
  ["/drain_listeners", true, "drain listeners"],
  ["/healthcheck/fail", true, "cause the server to fail health checks"],
  ["/healthcheck/ok", true, "cause the server to pass health checks"],
  ["/help", false, "print out list of admin commands"],
  ["/listeners", false, "print listener info"],
  ["/logging", true, "query/change logging levels"],
  ["/quitquitquit", true, "exit the server"],
  ["/ready", false, "print server state, return 200 if LIVE, otherwise return 503"],
  ["/reset_counters", true, "reset all counters to zero"],
  ["/server_info", false, "print server version/status information"],
  ["/stats", false, "print server stats"],
];

/** Envoy's uptime arithmetic: `std::time_t` values, whole seconds since the epoch, subtracted. */
function secondsBetween(fromMs: number, toMs: number): number {
  return Math.floor(toMs / 1000) - Math.floor(fromMs / 1000);
}

const STATE_GAUGE: Record<EnvoyState, number> = { LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3 };

/** Envoy's default quantiles (source/common/stats/histogram_impl.cc), as `/stats?format=json` lists them. */
const SUPPORTED_QUANTILES = [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100];

type Stat =
  | { readonly name: string; readonly kind: "text"; readonly value: string }
  | { readonly name: string; readonly kind: "counter" | "gauge"; readonly value: number }
  | { readonly name: string; readonly kind: "histogram"; readonly values: readonly number[] };

export async function startEnvoyEmulator(options: EnvoyEmulatorOptions = {}): Promise<EnvoyEmulator> {
  const ingressAddress = options.ingressStatAddress ?? "0.0.0.0_15000";
  const version = options.version ?? "0000000000000000000000000000000000000000/1.34.1/Clean/RELEASE/BoringSSL";
  const drainTimeMs = options.drainTimeMs ?? 600_000;
  const nodeId = options.nodeId ?? "emulated-envoy";
  const drainStrategy = options.drainStrategy ?? "Gradual";
  const random = options.random ?? Math.random;
  // Looked up at each call, so that a test replacing Date.now steps this Envoy's clock too.
  const wallClock = options.wallClock ?? (() => Date.now());
  const calls: AdminCall[] = [];
  const state = {
    init: options.init ?? "INITIALIZED" as EnvoyInitState,
    healthcheckFailed: false,
    /** On {@link EnvoyEmulatorOptions.wallClock}, as Envoy keeps its start times. */
    startedAt: wallClock(),
    firstStartedAt: wallClock(),
    /** When the inbound drain sequence began; `undefined` while not draining. */
    drainStartedAt: undefined as number | undefined,
    drainTimer: undefined as ReturnType<typeof setTimeout> | undefined,
    listenersStopped: 0,
    /** Gauges that have been set to a non-zero value since start: `usedonly` shows only written stats. */
    usedGauges: new Set<string>(),
  };

  /**
   * source/server/drain_manager_impl.cc `drainClose`: always once the health check has failed (drain type
   * DEFAULT); while draining, always with `immediate`, and with `gradual` with a probability that grows
   * from 0 to 1 over the drain time.
   */
  const drainClose = (): boolean => {
    if (state.healthcheckFailed) return true;
    if (state.drainStartedAt === undefined) return false;
    if (drainStrategy === "Immediate" || drainTimeMs <= 0) return true;
    const elapsed = Date.now() - state.drainStartedAt;
    return elapsed >= drainTimeMs || elapsed > random() * drainTimeMs;
  };
  const ingress = await startIngress(drainClose);
  const handlers = options.drainListeners === false
    ? ADMIN_HANDLERS.filter(([path]) => path !== "/drain_listeners")
    : ADMIN_HANDLERS;

  // source/server/utils.cc `serverState`: the init state until initialized, then LIVE unless health check failed.
  const serverState = (): EnvoyState =>
    state.init === "INITIALIZED" ? (state.healthcheckFailed ? "DRAINING" : "LIVE") : state.init;

  /**
   * source/server/server.cc `updateServerStats`: `server.state`, `server.live` and `server.uptime` are set
   * at each stats flush, so `/stats` shows them up to a flush interval late; `/ready` and `/server_info`
   * compute the state per request.
   */
  const flushed = { state: serverState(), uptimeSeconds: 0 };
  const flush = () => {
    flushed.state = serverState();
    const uptimeSeconds = secondsBetween(state.startedAt, wallClock());
    flushed.uptimeSeconds = uptimeSeconds < 0 ? 2 ** 64 + uptimeSeconds : uptimeSeconds;
  };
  const flushTimer = setInterval(flush, options.statsFlushIntervalMs ?? 5_000);

  const stats = (): Stat[] => {
    const active = ingress.active();
    const gauge = (name: string, value: number): Stat => {
      if (value !== 0) state.usedGauges.add(name);
      return { name, kind: "gauge", value };
    };
    const counter = (name: string, value: number): Stat => ({ name, kind: "counter", value });
    return [
      { name: "control_plane.identifier", kind: "text", value: "" },
      { name: "server.version_label", kind: "text", value: version.split("/")[1] ?? "" },
      gauge("http.admin.downstream_cx_active", 1),
      gauge("http.ingress.downstream_cx_active", active),
      gauge(`listener.${ingressAddress}.downstream_cx_active`, active),
      counter(`listener.${ingressAddress}.downstream_cx_total`, ingress.total()),
      gauge(`listener.${ingressAddress}.worker_0.downstream_cx_active`, active),
      counter(`listener.${ingressAddress}.worker_0.downstream_cx_total`, ingress.total()),
      gauge("listener.0.0.0.0_15001.downstream_cx_active", 0),
      counter("listener.0.0.0.0_15001.downstream_cx_total", 0),
      gauge("listener.admin.downstream_cx_active", 1),
      counter("listener.admin.downstream_cx_total", calls.length + 1),
      // source/common/listener_manager/listener_manager_impl.h: ALL_LISTENER_MANAGER_STATS.
      counter("listener_manager.listener_stopped", state.listenersStopped),
      gauge("listener_manager.total_listeners_active", ingress.accepting() ? 2 : 1),
      gauge("server.live", flushed.state === "LIVE" ? 1 : 0),
      gauge("server.state", STATE_GAUGE[flushed.state]),
      gauge("server.total_connections", active),
      gauge("server.uptime", flushed.uptimeSeconds),
      { name: `listener.${ingressAddress}.downstream_cx_length_ms`, kind: "histogram", values: ingress.lifetimes() },
    ];
  };

  const handle = (request: SimRequest): SimResponse => {
    const handler = handlers.find(([path]) => path === request.path);
    if (!handler) return { status: 404, body: `invalid path. ${help(handlers)}` };
    if (handler[1] && request.method !== "POST") {
      return { status: 405, body: `Method ${request.method} not allowed, POST required.` };
    }
    switch (request.path) {
      case "/":
        return homePage(handlers);
      case "/ready":
        // source/server/admin/server_info_handler.cc handlerReady
        return { status: serverState() === "LIVE" ? 200 : 503, body: `${serverState()}\n` };
      case "/server_info":
        return json(200, serverInfo());
      case "/healthcheck/fail":
        // source/server/admin/server_cmd_handler.cc
        state.healthcheckFailed = true;
        return { status: 200, body: "OK\n" };
      case "/healthcheck/ok":
        state.healthcheckFailed = false;
        return { status: 200, body: "OK\n" };
      case "/drain_listeners":
        return drainListeners(request.query);
      case "/stats":
        return renderStats(request.query, stats(), state.usedGauges);
      default:
        // Handlers the helper never calls (/clusters, /help, ...) exist for the help text; their output is not modelled.
        return { status: 200, body: "" };
    }
  };

  const serverInfo = () => {
    // source/server/admin/server_info_handler.cc handlerServerInfo: protobuf JSON, durations as "<n>s".
    const seconds = (since: number) => `${secondsBetween(since, wallClock())}s`;
    return {
      version,
      state: serverState(),
      hot_restart_version: "11.104",
      command_line_options: {
        concurrency: 1,
        mode: "Serve",
        drain_time: `${drainTimeMs / 1000}s`,
        drain_strategy: drainStrategy,
        parent_shutdown_time: "900s",
        restart_epoch: 0,
      },
      uptime_current_epoch: seconds(state.startedAt),
      uptime_all_epochs: seconds(state.firstStartedAt),
      // The agent defaults the cluster to the node id (envoy_bootstrap.go getNodeCluster).
      node: { id: nodeId, cluster: nodeId },
    };
  };

  const stopListeners = () => {
    if (!ingress.accepting()) return;
    state.listenersStopped++;
    ingress.stopAccepting();
  };

  /**
   * source/server/admin/listeners_handler.cc handlerDrainListeners. `graceful` starts the drain sequence
   * and keeps accepting; when the drain time ends (source/server/drain_manager_impl.cc
   * `startDrainSequence`) the listeners stop, unless `skip_exit` was sent. A second graceful call while
   * draining answers OK and changes nothing. Without `graceful` the listeners stop at once. The
   * emulator's only inbound listener is the ingress one, so `inboundonly` drains the same set.
   */
  const drainListeners = (query: URLSearchParams): SimResponse => {
    const graceful = query.has("graceful");
    const skipExit = options.skipExit !== false && query.has("skip_exit");
    if (skipExit && !graceful) return { status: 400, body: "skip_exit requires graceful\n" };
    if (!graceful) {
      stopListeners();
    } else if (state.drainStartedAt === undefined) {
      state.drainStartedAt = Date.now();
      state.drainTimer = setTimeout(() => {
        state.drainTimer = undefined;
        if (!skipExit) stopListeners();
      }, drainTimeMs);
    }
    return { status: 200, body: "OK\n" };
  };

  const admin = await startSimServer({
    faults: options.faults ?? new Faults(),
    socketPath: options.adminSocketPath,
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

  const clearDrain = () => {
    if (state.drainTimer !== undefined) clearTimeout(state.drainTimer);
    state.drainTimer = undefined;
    state.drainStartedAt = undefined;
  };
  const close = async () => {
    clearDrain();
    clearInterval(flushTimer);
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
      return state.drainStartedAt !== undefined;
    },
    get accepting() {
      return ingress.accepting();
    },
    get activeIngressConnections() {
      return ingress.active();
    },
    calls,
    async restart() {
      clearDrain();
      await ingress.restart();
      Object.assign(state, {
        init: "INITIALIZED",
        healthcheckFailed: false,
        startedAt: wallClock(),
        firstStartedAt: wallClock(),
        listenersStopped: 0,
        usedGauges: new Set<string>(),
      });
      flush();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** source/server/admin/admin.cc getHelp: the handlers in path order, `(POST)` after the mutating ones. */
function help(handlers: readonly AdminHandler[]): string {
  const lines = handlers.map(([path, mutates, text]) => `  ${path}${mutates ? " (POST)" : ""}: ${text}`);
  return `admin commands are:\n${lines.join("\n")}\n`;
}

/** source/server/admin/admin_html.cc handlerAdminHome: an HTML table of the handlers, answered 200. */
function homePage(handlers: readonly AdminHandler[]): SimResponse {
  const rows = handlers.map(([path, mutates, text]) =>
    `<tr class='home-row'><td class='home-data'>${
      mutates ? `<button class='button-as-link'>${path}</button>` : `<a href='${path}'>${path}</a>`
    }</td><td class='home-data'>${text}</td></tr>`
  );
  const body = `<!DOCTYPE html>\n<html lang='en'>\n<head>\n<title>Envoy Admin</title>\n</head>\n<body>\n` +
    `<table class='home-table'>\n<tbody>\n${rows.join("\n")}\n</tbody>\n</table>\n</body>\n</html>\n`;
  return { status: 200, headers: { "content-type": "text/html; charset=UTF-8" }, body };
}

/**
 * RE2 has no lookaround and no backreferences: a filter using them is rejected, as Envoy's
 * source/server/admin/stats_params.cc does with `Invalid re2 regex`.
 */
function re2(filter: string): RegExp | undefined {
  if (/\(\?<?[=!]|\\[1-9]/.test(filter)) return undefined;
  try {
    return new RegExp(filter);
  } catch {
    return undefined;
  }
}

/**
 * source/server/admin/stats_request.cc and stats_render.cc: text readouts first (string values), then
 * counters and gauges by name, then, when a histogram matches, one trailing `histograms` entry.
 * `filter` is an RE2 partial match; `usedonly` leaves out stats never written since start.
 */
function renderStats(query: URLSearchParams, all: readonly Stat[], usedGauges: ReadonlySet<string>): SimResponse {
  let pattern: RegExp | undefined;
  const filter = query.get("filter");
  if (filter !== null) {
    pattern = re2(filter);
    if (pattern === undefined) return { status: 400, body: "Invalid re2 regex" };
  }
  const used = (stat: Stat) =>
    stat.kind === "text"
      ? stat.value !== ""
      : stat.kind === "histogram"
      ? stat.values.length > 0
      : stat.kind === "counter"
      ? stat.value > 0
      : usedGauges.has(stat.name);
  const selected = all.filter((stat) => (pattern?.test(stat.name) ?? true) && (!query.has("usedonly") || used(stat)));
  const byName = (a: Stat, b: Stat) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  const texts = selected.filter((s) => s.kind === "text").sort(byName);
  const numbers = selected.filter((s) => s.kind === "counter" || s.kind === "gauge").sort(byName);
  const histograms = selected.filter((s) => s.kind === "histogram").sort(byName);
  const format = query.get("format") ?? "text";
  if (format === "json") {
    const entries: unknown[] = [...texts, ...numbers].map((s) => ({ name: s.name, value: "value" in s ? s.value : 0 }));
    if (histograms.length > 0) {
      entries.push({
        histograms: {
          supported_quantiles: SUPPORTED_QUANTILES,
          computed_quantiles: histograms.map((h) => ({
            name: h.name,
            values: SUPPORTED_QUANTILES.map((q) => {
              const value = "values" in h ? quantile(h.values, q) : null;
              return { cumulative: value, interval: value };
            }),
          })),
        },
      });
    }
    return json(200, { stats: entries });
  }
  if (format === "text") {
    const lines = [...texts, ...numbers, ...histograms].map((s) =>
      s.kind === "text"
        ? `${s.name}: "${s.value}"`
        : s.kind === "histogram"
        ? `${s.name}: ${s.values.length === 0 ? "No recorded values" : `P50(${quantile(s.values, 50)})`}`
        : `${s.name}: ${s.value}`
    );
    return { status: 200, body: lines.map((line) => `${line}\n`).join("") };
  }
  return { status: 400, body: "usage: /stats?format=(html|active-html|json|prometheus|text)\n\n" };
}

function quantile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((q / 100) * sorted.length))];
}

interface Ingress {
  readonly port: number;
  active(): number;
  total(): number;
  /** Lifetimes in ms of the connections closed so far (`downstream_cx_length_ms`). */
  lifetimes(): number[];
  accepting(): boolean;
  stopAccepting(): void;
  /** Drops every connection and listens again on the same port, counters at zero. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The ingress listener: real TCP connections. Every response asks `drainClose` and, when it says so,
 * carries `Connection: close` and ends its connection (source/common/http/conn_manager_impl.cc). A
 * stopped listener closes its socket, so new connections are refused; those it had stay open.
 */
async function startIngress(drainClose: () => boolean): Promise<Ingress> {
  const open = new Map<Socket, number>();
  const counts = { total: 0, lifetimes: [] as number[] };
  const server = http.createServer(async (req, res) => {
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
    counts.total++;
    open.set(socket, Date.now());
    socket.on("close", () => {
      const openedAt = open.get(socket);
      if (openedAt !== undefined) counts.lifetimes.push(Date.now() - openedAt);
      open.delete(socket);
    });
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  await listen(0);
  const { port } = server.address() as AddressInfo;
  let listening = true;
  let closed: Promise<void> | undefined;
  const stop = () => {
    listening = false;
    closed ??= new Promise<void>((resolve) => server.close(() => resolve()));
    return closed;
  };
  return {
    port,
    active: () => open.size,
    total: () => counts.total,
    lifetimes: () => [...counts.lifetimes],
    accepting: () => listening,
    stopAccepting() {
      void stop();
    },
    async restart() {
      for (const socket of open.keys()) socket.destroy();
      await stop();
      Object.assign(counts, { total: 0, lifetimes: [] });
      closed = undefined;
      await listen(port);
      listening = true;
    },
    async close() {
      for (const socket of open.keys()) socket.destroy();
      await stop();
    },
  };
}
