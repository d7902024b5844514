/**
 * Envoy's admin API, as far as the helper needs it: readiness, server state, failing the health check,
 * draining inbound listeners and reading the ingress listener's connection counters. Works with any
 * Envoy (App Mesh's, or one driven by another control plane). Every call has a hard timeout; failures
 * surface as the typed errors of lib/http.ts.
 * @module
 */
import { getJson, HttpStatusError, request } from "../http.ts";
import type { IngressCount } from "./machine.ts";

export interface Readiness {
  readonly live: boolean;
  /** The state as Envoy wrote it (`LIVE`, `DRAINING`, ...). */
  readonly state: string;
}

export interface ServerInfo {
  readonly state: string;
  /** Envoy's build, e.g. `<sha>/1.29.4/Clean/RELEASE/BoringSSL`. */
  readonly version: string | undefined;
}

/** The two counters of a listener that tell whether it is quiet. */
export type ListenerCounter = "downstream_cx_active" | "downstream_cx_total";

/** Selects the listener whose connections count as inbound, from its stats names. */
export interface IngressListener {
  /** RE2 (and JavaScript) regex sent as `/stats?filter=`; it matches exactly the wanted stat names. */
  readonly filter: string;
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
  const filter = String.raw`^listener\.${name}\.(downstream_cx_active|downstream_cx_total)$`;
  const pattern = new RegExp(filter);
  return { filter, counterOf: (statName) => pattern.exec(statName)?.[1] as ListenerCounter | undefined };
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Overrides the client's per-request timeout (e.g. so a call ends by a deadline). */
  readonly timeoutMs?: number;
}

interface StatsAnswer {
  readonly stats?: ReadonlyArray<{ readonly name?: unknown; readonly value?: unknown }>;
}

export class EnvoyAdmin {
  constructor(readonly baseUrl: string, readonly timeoutMs = 2_000) {}

  /** `GET /ready`. Any answer other than 200 or 503 is an {@link HttpStatusError} (not Envoy's admin?). */
  async ready(options: CallOptions = {}): Promise<Readiness> {
    const url = `${this.baseUrl}/ready`;
    const answer = await request(url, this.#options(options));
    if (answer.status !== 200 && answer.status !== 503) throw new HttpStatusError(url, answer.status, answer.body);
    const state = answer.body.trim();
    return { live: answer.status === 200 && state === "LIVE", state };
  }

  /** `GET /server_info`: the state and Envoy's version. */
  async serverInfo(options: CallOptions = {}): Promise<ServerInfo> {
    const info = await getJson<{ state?: unknown; version?: unknown }>(
      `${this.baseUrl}/server_info`,
      this.#options(options),
    );
    return {
      state: typeof info.state === "string" ? info.state : "unknown",
      version: typeof info.version === "string" ? info.version : undefined,
    };
  }

  /** `POST /healthcheck/fail`: Envoy fails inbound health checks from now on; returns Envoy's answer. */
  failHealthcheck(options: CallOptions = {}): Promise<string> {
    return this.#post("/healthcheck/fail", options);
  }

  /** `POST /drain_listeners?graceful&inboundonly`: inbound listeners start closing keep-alive connections. */
  drainInboundListeners(options: CallOptions = {}): Promise<string> {
    return this.#post("/drain_listeners?graceful&inboundonly", options);
  }

  /**
   * The ingress listener's open and accepted connections (each summed over its addresses), read in one
   * `/stats` call so that both describe the same moment; `undefined` when Envoy has no listener that
   * matches (or lacks either counter).
   */
  async ingressCount(listener: IngressListener, options: CallOptions = {}): Promise<IngressCount | undefined> {
    const url = `${this.baseUrl}/stats?format=json&filter=${encodeURIComponent(listener.filter)}`;
    const answer = await getJson<StatsAnswer>(url, this.#options(options));
    const sums = new Map<ListenerCounter, number>();
    for (const stat of answer.stats ?? []) {
      const counter = typeof stat.name === "string" ? listener.counterOf(stat.name) : undefined;
      if (counter !== undefined && typeof stat.value === "number") {
        sums.set(counter, (sums.get(counter) ?? 0) + stat.value);
      }
    }
    const active = sums.get("downstream_cx_active");
    const accepted = sums.get("downstream_cx_total");
    return active === undefined || accepted === undefined ? undefined : { active, accepted };
  }

  async #post(path: string, options: CallOptions): Promise<string> {
    const url = `${this.baseUrl}${path}`;
    const answer = await request(url, { ...this.#options(options), method: "POST" });
    if (answer.status !== 200) throw new HttpStatusError(url, answer.status, answer.body);
    return answer.body.trim();
  }

  #options(options: CallOptions) {
    return { timeoutMs: options.timeoutMs ?? this.timeoutMs, signal: options.signal };
  }
}
