/**
 * Envoy's admin API, as far as the helper needs it: readiness, server state, failing the health check,
 * draining inbound listeners and reading the ingress listener's connection counters. Works with any
 * Envoy (App Mesh's, or one driven by another control plane), over TCP or a unix socket
 * (`unix:///tmp/envoy_admin.sock`, App Mesh's `ENVOY_ADMIN_MODE=uds`). Every call has a hard timeout;
 * failures surface as the typed errors of lib/http.ts.
 * @module
 */
import { describeTarget, getJson, HttpStatusError, request, type RequestOptions } from "../http.ts";
import type { EnvoyReading, IngressCount } from "./machine.ts";

export interface Readiness {
  readonly live: boolean;
  /** The state as Envoy wrote it (`LIVE`, `DRAINING`, ...). */
  readonly state: string;
}

export interface ServerInfo {
  readonly state: string;
  /** Envoy's build, e.g. `<sha>/1.29.4/Clean/RELEASE/BoringSSL`. */
  readonly version: string | undefined;
  /** `command_line_options.drain_time` (`--drain-time-s`; App Mesh sets it from `LISTENER_DRAIN_WAIT_TIME_S`). */
  readonly drainTimeSeconds: number | undefined;
  /** `uptime_current_epoch`: seconds since this Envoy process started. */
  readonly uptimeSeconds: number | undefined;
  /** `node.id` of its bootstrap: who configured this Envoy (an App Mesh node ARN, an ECS task set ARN, ...). */
  readonly nodeId: string | undefined;
}

/** The two counters of a listener that tell whether it is quiet. */
export type ListenerCounter = "downstream_cx_active" | "downstream_cx_total";

/** Selects the listener whose connections count as inbound, from its stats names. */
export interface IngressListener {
  /** RE2 (and JavaScript) regex that matches exactly the wanted stat names, without anchors. */
  readonly pattern: string;
  /** Which of the ingress listener's counters `statName` is; `undefined` for any other stat. */
  counterOf(statName: string): ListenerCounter | undefined;
}

const IPV4_OR_IPV6 = String.raw`(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F_.]*\])`;

/**
 * `15000`: every listener bound to port 15000, IPv4 or IPv6 (`listener.0.0.0.0_15000.*`,
 * `listener.[__]_15000.*`), summed. Anything else: the listener whose stats name is exactly that.
 * Per-worker stats (`listener.X.worker_0.downstream_cx_active`) never match, so nothing is counted twice.
 */
export function ingressListener(setting: string): IngressListener {
  const name = /^\d+$/.test(setting) ? `${IPV4_OR_IPV6}_${setting}` : escapeRegex(setting);
  // `name` has no capturing group of its own, so group 1 is the counter.
  const pattern = String.raw`listener\.${name}\.(downstream_cx_active|downstream_cx_total)`;
  const exact = new RegExp(`^${pattern}$`);
  return { pattern, counterOf: (statName) => exact.exec(statName)?.[1] as ListenerCounter | undefined };
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Counts the listeners Envoy has stopped (source/common/listener_manager/listener_manager_impl.h). */
const LISTENER_STOPPED = "listener_manager.listener_stopped";

/** Every listener's accepted-connections counter, per-worker ones excluded: to list the listeners Envoy has. */
const LISTENER_TOTALS = /^listener\.(.+)\.downstream_cx_total$/;

export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Overrides the client's per-request timeout (e.g. so a call ends by a deadline). */
  readonly timeoutMs?: number;
}

interface StatsAnswer {
  readonly stats?: ReadonlyArray<{ readonly name?: unknown; readonly value?: unknown }>;
}

/** `"20s"` (protobuf JSON of a Duration) in seconds; `undefined` for anything else. */
function durationSeconds(value: unknown): number | undefined {
  // Negative too: Envoy's uptime is negative once the host's clock was stepped back past its start.
  const match = typeof value === "string" ? /^(-?\d+(?:\.\d+)?)s$/.exec(value) : null;
  return match ? Number(match[1]) : undefined;
}

export class EnvoyAdmin {
  readonly #httpBase: string;
  readonly #unixSocket: string | undefined;

  /** `baseUrl`: `http(s)://host:port[/prefix]` or `unix:///path/to/admin.sock`. */
  constructor(readonly baseUrl: string, readonly timeoutMs = 2_000) {
    this.#unixSocket = baseUrl.startsWith("unix://") ? baseUrl.slice("unix://".length) : undefined;
    this.#httpBase = this.#unixSocket === undefined ? baseUrl : "http://localhost";
  }

  /** `GET /ready`. Any answer other than 200 or 503 is an {@link HttpStatusError} (not Envoy's admin?). */
  async ready(options: CallOptions = {}): Promise<Readiness> {
    const url = `${this.#httpBase}/ready`;
    const answer = await request(url, this.#options(options));
    if (answer.status !== 200 && answer.status !== 503) {
      throw new HttpStatusError(this.#shown(url), answer.status, answer.body);
    }
    const state = answer.body.trim();
    return { live: answer.status === 200 && state === "LIVE", state };
  }

  /** `GET /server_info`: the state, Envoy's version and its drain time. */
  async serverInfo(options: CallOptions = {}): Promise<ServerInfo> {
    const info = await getJson<{
      state?: unknown;
      version?: unknown;
      uptime_current_epoch?: unknown;
      command_line_options?: { drain_time?: unknown };
      node?: { id?: unknown };
    }>(`${this.#httpBase}/server_info`, this.#options(options));
    return {
      state: typeof info.state === "string" ? info.state : "unknown",
      version: typeof info.version === "string" ? info.version : undefined,
      drainTimeSeconds: durationSeconds(info.command_line_options?.drain_time),
      uptimeSeconds: durationSeconds(info.uptime_current_epoch),
      nodeId: typeof info.node?.id === "string" ? info.node.id : undefined,
    };
  }

  /** `POST /healthcheck/fail`: Envoy fails inbound health checks from now on; returns Envoy's answer. */
  failHealthcheck(options: CallOptions = {}): Promise<string> {
    return this.#post("/healthcheck/fail", options);
  }

  /**
   * `POST /drain_listeners?graceful&inboundonly&skip_exit`: inbound listeners tell each connection to close
   * in its next response and keep accepting; `skip_exit` (Envoy >= 1.29) keeps them accepting after
   * Envoy's drain time too, so that only the helper's own deadline ends the drain.
   */
  drainInboundListeners(options: CallOptions = {}): Promise<string> {
    return this.#post("/drain_listeners?graceful&inboundonly&skip_exit", options);
  }

  /**
   * What the drain watches. The state and uptime (from which Envoy's start) come from `/server_info`, which computes them per
   * request: the `server.state` and `server.uptime` gauges are only set at each stats flush (every 5 s
   * by default; source/server/server.cc `updateServerStats`), too late to tell a restart from a fail
   * call just taken. With `listener` (connections mode), one `/stats` call also reads the listeners
   * stopped and the ingress listener's open and accepted connections (each summed over its addresses;
   * `undefined` when no listener matches), so that both counters describe the same moment.
   */
  async drainReading(listener: IngressListener | undefined, options: CallOptions = {}): Promise<EnvoyReading> {
    // The wall clock, on purpose: Envoy's uptime is its wall clock minus its start, both in whole seconds
    // (server_info_handler.cc), and the host's clock read around the call undoes that to bound the start.
    const askedAt = Date.now();
    const info = await this.serverInfo(options);
    const answeredAt = Date.now();
    const uptime = info.uptimeSeconds;
    if (uptime === undefined) {
      throw new HttpStatusError(this.#shown(`${this.#httpBase}/server_info`), 200, "no uptime_current_epoch");
    }
    const startSecond = (wallMs: number) => Math.floor(wallMs / 1000) - uptime;
    const started = { earliestMs: startSecond(askedAt) * 1000, latestMs: (startSecond(answeredAt) + 1) * 1000 };
    const base = { live: info.state === "LIVE", started };
    if (listener === undefined) return { ...base, listenersStopped: 0, ingress: undefined };
    const values = await this.#stats(`^(?:${listener.pattern}|${escapeRegex(LISTENER_STOPPED)})$`, options);
    const sums = new Map<ListenerCounter, number>();
    for (const [name, value] of values) {
      const counter = listener.counterOf(name);
      if (counter !== undefined) sums.set(counter, (sums.get(counter) ?? 0) + value);
    }
    const active = sums.get("downstream_cx_active");
    const accepted = sums.get("downstream_cx_total");
    const ingress: IngressCount | undefined = active === undefined || accepted === undefined
      ? undefined
      : { active, accepted };
    return { ...base, listenersStopped: values.get(LISTENER_STOPPED) ?? 0, ingress };
  }

  /** The stats names of the listeners Envoy has (`0.0.0.0_15000`, ...), the admin listener left out. */
  async listenerNames(options: CallOptions = {}): Promise<string[]> {
    const values = await this.#stats(LISTENER_TOTALS.source, options);
    return [...values.keys()]
      .map((name) => LISTENER_TOTALS.exec(name)?.[1])
      .filter((name): name is string => name !== undefined && name !== "admin" && !/\.worker_\d+$/.test(name));
  }

  /** Numeric stats matching `filter`; text readouts (string values) and the histograms entry are skipped. */
  async #stats(filter: string, options: CallOptions): Promise<Map<string, number>> {
    const url = `${this.#httpBase}/stats?format=json&filter=${encodeURIComponent(filter)}`;
    const answer = await getJson<StatsAnswer>(url, this.#options(options));
    const values = new Map<string, number>();
    for (const stat of answer.stats ?? []) {
      if (typeof stat.name === "string" && typeof stat.value === "number") values.set(stat.name, stat.value);
    }
    return values;
  }

  /** Taken only when Envoy itself says so: 200 `OK` (an HTML page or a proxy's 200 is not Envoy's answer). */
  async #post(path: string, options: CallOptions): Promise<string> {
    const url = `${this.#httpBase}${path}`;
    const answer = await request(url, { ...this.#options(options), method: "POST" });
    const body = answer.body.trim();
    if (answer.status !== 200 || body !== "OK") throw new HttpStatusError(this.#shown(url), answer.status, body);
    return body;
  }

  #shown(url: string): string {
    return describeTarget(url, { unixSocket: this.#unixSocket });
  }

  #options(options: CallOptions): RequestOptions {
    return { timeoutMs: options.timeoutMs ?? this.timeoutMs, signal: options.signal, unixSocket: this.#unixSocket };
  }
}
