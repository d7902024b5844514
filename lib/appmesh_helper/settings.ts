/**
 * The App Mesh helper's settings: the original helper's `DRAIN_DELAY`, `DRAIN_TIMEOUT`, `PORT` and
 * `HEALTHCHECK_PATH` with their meaning kept, then the new ones. One declaration each; `--help` and
 * the README table are generated from here.
 * @module
 */
import { ConfigError, type ConfigOf, integer, oneOf, parseHttpUrl, seconds, type Setting, url } from "../config.ts";
import { logFormatSetting, logLevelSetting } from "../log.ts";
import { DRAIN_MODES } from "./machine.ts";

/** ECS caps a container's stopTimeout at 120 s; this leaves the helper 10 s to exit on its own. */
export const STOP_TIMEOUT_BUDGET_SECONDS = 110;

/** Where `PORT` + `HEALTHCHECK_PATH` point: the app shares the task's network namespace (awsvpc). */
export const APP_HOST = "127.0.0.1";

/**
 * Which Envoy listener carries inbound traffic: a port number (any listener bound to that port, IPv4
 * or IPv6) or the listener's name in Envoy's stats (its address such as `0.0.0.0_15000`, or its
 * `stat_prefix`). `:` is written as `_`, the way Envoy writes it in stat names.
 */
const ingressListener: Setting<string> = {
  env: "ENVOY_INGRESS_LISTENER",
  flag: "envoy-ingress-listener",
  type: "port|stat-name",
  default: "15000",
  help: "Envoy listener whose downstream_cx_active counts inbound connections: a port (App Mesh's ingress is " +
    "15000) or the listener's stats name (0.0.0.0_15000, or its stat_prefix).",
  parse: (raw) => {
    const value = raw.trim();
    if (/^\d+$/.test(value)) {
      const port = Number(value);
      if (port < 1 || port > 65535) throw new Error("expected a port from 1 to 65535 or a listener's stats name");
      return String(port);
    }
    if (!/^[\w.\[\]:-]+$/.test(value)) {
      throw new Error("expected a port from 1 to 65535 or a listener's stats name such as 0.0.0.0_15000");
    }
    return value.replaceAll(":", "_");
  },
};

/** The admin addresses the helper accepts, as its errors name them. */
const ADMIN_URL_FORMS = "http://host:port, https://host:port or unix:///path/to/admin.sock (an admin on a unix socket)";

/**
 * Envoy's admin address: `http(s)://host:port` (with an optional path prefix), or `unix:///path` for an
 * admin on a unix socket (App Mesh's `ENVOY_ADMIN_MODE=uds` puts it at /tmp/envoy_admin.sock). A query
 * or fragment would end up in the middle of every admin call's URL, so it is refused.
 */
const envoyAdminUrl: Setting<string> = {
  env: "ENVOY_ADMIN_URL",
  flag: "envoy-admin-url",
  type: "url",
  default: "http://127.0.0.1:9901",
  help: "Envoy's admin interface: http://host:port, or unix:///path/to/admin.sock (App Mesh's " +
    "ENVOY_ADMIN_MODE=uds: unix:///tmp/envoy_admin.sock, on a volume shared with the Envoy container).",
  parse: (raw) => {
    const value = raw.trim();
    if (value.startsWith("unix://")) {
      const path = value.slice("unix://".length);
      if (!/^\/[^?#\0]*[^/?#\0]$/.test(path)) {
        throw new Error("expected unix:// and an absolute socket path, e.g. unix:///tmp/envoy_admin.sock");
      }
      return value;
    }
    if (/[?#]/.test(value)) throw new Error("expected no query or fragment: the admin paths are appended to it");
    try {
      return parseHttpUrl(value);
    } catch {
      throw new Error(`expected ${ADMIN_URL_FORMS}`);
    }
  },
};

const healthcheckPath: Setting<string | undefined> = {
  env: "HEALTHCHECK_PATH",
  flag: "healthcheck-path",
  type: "path",
  help: "With PORT: the app's health check path (e.g. /health), asked at http://127.0.0.1:PORT/PATH.",
  parse: (raw) => {
    const value = raw.trim();
    if (!/^\/\S*$/.test(value)) throw new Error("expected a path starting with / (e.g. /health)");
    return value;
  },
};

export const appmeshHelperSettings = {
  drainDelay: seconds({
    env: "DRAIN_DELAY",
    flag: "drain-delay",
    default: 40,
    help: "Seconds between SIGTERM and failing Envoy's health check, so that new tasks come into service first.",
  }),
  drainTimeout: seconds({
    env: "DRAIN_TIMEOUT",
    flag: "drain-timeout",
    default: 40,
    help: "Seconds after failing Envoy's health check until the helper exits (in connections mode: at the latest).",
  }),
  drainMode: oneOf({
    env: "DRAIN_MODE",
    flag: "drain-mode",
    default: "fixed",
    choices: DRAIN_MODES,
    help: "fixed: always wait DRAIN_TIMEOUT. connections: also drain Envoy's inbound listeners and exit once " +
      "they have had no connection for DRAIN_QUIET_PERIOD.",
  }),
  drainQuietPeriod: seconds({
    env: "DRAIN_QUIET_PERIOD",
    flag: "drain-quiet-period",
    default: 3,
    help: "connections mode: seconds the ingress listener must stay at zero connections before the helper exits.",
  }),
  envoyAdminUrl,
  envoyIngressListener: ingressListener,
  appHealthcheckUrl: url({
    env: "APP_HEALTHCHECK_URL",
    flag: "app-healthcheck-url",
    help: "The app's health check URL. Unset (and no PORT): the app is not checked.",
  }),
  port: integer({
    env: "PORT",
    flag: "port",
    min: 1,
    max: 65535,
    help: "The original helper's app port; with HEALTHCHECK_PATH, the app's health check on 127.0.0.1.",
  }),
  healthcheckPath,
  metadataUri: url({
    env: "ECS_CONTAINER_METADATA_URI_V4",
    flag: "metadata-uri",
    help: "ECS task metadata endpoint v4 (ECS sets it): read once at start to see whether the task uses " +
      "Service Connect. Unset: not read.",
  }),
  logLevel: logLevelSetting(),
  logFormat: logFormatSetting(),
};

export type AppmeshHelperSettings = typeof appmeshHelperSettings;
export type AppmeshHelperConfig = ConfigOf<AppmeshHelperSettings>;

/**
 * Checks across settings. A half-given app health check is an error rather than a default: a guessed
 * port or path that does not answer would make every shutdown look like "app already gone" and skip
 * draining.
 */
export function validateSettings(config: AppmeshHelperConfig): ConfigError[] {
  const errors: ConfigError[] = [];
  const pairGiven = config.port !== undefined || config.healthcheckPath !== undefined;
  if (config.appHealthcheckUrl !== undefined && pairGiven) {
    errors.push(
      new ConfigError(
        "APP_HEALTHCHECK_URL",
        config.appHealthcheckUrl,
        "set either APP_HEALTHCHECK_URL or PORT with HEALTHCHECK_PATH, not both",
      ),
    );
  }
  if (config.port !== undefined && config.healthcheckPath === undefined) {
    errors.push(new ConfigError("HEALTHCHECK_PATH (or --healthcheck-path)", undefined, "is required when PORT is set"));
  }
  if (config.healthcheckPath !== undefined && config.port === undefined) {
    errors.push(new ConfigError("PORT (or --port)", undefined, "is required when HEALTHCHECK_PATH is set"));
  }
  return errors;
}

/** The app's health check URL, or `undefined` when none is configured. */
export function appHealthUrl(config: AppmeshHelperConfig): string | undefined {
  if (config.appHealthcheckUrl !== undefined) return config.appHealthcheckUrl;
  if (config.port === undefined || config.healthcheckPath === undefined) return undefined;
  return `http://${APP_HOST}:${config.port}${config.healthcheckPath}`;
}

/** Operator warnings about settings that are valid but probably not what was meant. */
export function settingWarnings(config: AppmeshHelperConfig): string[] {
  const warnings: string[] = [];
  const total = config.drainDelay + config.drainTimeout;
  if (total > STOP_TIMEOUT_BUDGET_SECONDS) {
    warnings.push(
      `DRAIN_DELAY + DRAIN_TIMEOUT is ${total} s: ECS caps stopTimeout at 120 s and kills the task's containers ` +
        `then, so keep the sum at ${STOP_TIMEOUT_BUDGET_SECONDS} s or less`,
    );
  }
  if (config.drainMode === "connections" && config.drainQuietPeriod >= config.drainTimeout) {
    warnings.push(
      "DRAIN_QUIET_PERIOD is not shorter than DRAIN_TIMEOUT: connections mode can never end the drain early",
    );
  }
  return warnings;
}
