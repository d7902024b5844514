/**
 * The appmesh-helper role: the startup stage (log when Envoy and the app can serve), the `health`
 * subcommand (the container's ECS health check), and the shutdown stage on the first SIGTERM/SIGINT.
 * @module
 */
import { monotonicNow } from "../clock.ts";
import { metadataClient, serviceConnectContainer } from "../ecs_metadata.ts";
import { ExitCode, loggableSettings, type RoleProgram } from "../lifecycle.ts";
import type { Logger } from "../log.ts";
import { describeError } from "../retry.ts";
import { roleInfo } from "../roles.ts";
import { checkHealth } from "./health.ts";
import { EnvoyAdmin, ingressListener } from "./envoy_admin.ts";
import {
  appHealthUrl,
  type AppmeshHelperSettings,
  appmeshHelperSettings,
  settingWarnings,
  validateSettings,
} from "./settings.ts";
import { isServiceConnectProxy, serviceConnectNotice } from "./service_connect.ts";
import { runShutdown } from "./shutdown.ts";
import { watchStartup } from "./startup.ts";

/** How long the app may take to answer its health check before it counts as not answering. */
export const APP_TIMEOUT_MS = 2_000;

/**
 * Envoy's stats are read this often once its health check has failed: a restarted Envoy is failed again
 * within this long, and in connections mode the exit comes at most this late after the quiet period.
 */
export const CONNECTION_POLL_INTERVAL_MS = 500;

/** How long the start-up look at task metadata may retry: it only informs, and must not outlive the start. */
const METADATA_BUDGET_MS = 10_000;

export const appmeshHelperProgram: RoleProgram<AppmeshHelperSettings> = {
  info: roleInfo("appmesh-helper")!,
  spec: appmeshHelperSettings,
  subcommands: {
    health: "exit 0 when Envoy's /ready says LIVE and the app (when configured) answers 2xx/3xx, else 1",
  },
  helpExtra: [
    "The app's health check: APP_HEALTHCHECK_URL, or PORT with HEALTHCHECK_PATH (http://127.0.0.1:PORT/PATH);",
    "neither: the app is not checked. On SIGTERM the helper always exits 0 once the drain is over.",
  ].join("\n"),
  validate: validateSettings,
  async run({ config, subcommand, log, shutdown }) {
    const envoy = new EnvoyAdmin(config.envoyAdminUrl);
    const appUrl = appHealthUrl(config);
    if (subcommand === "health") return await checkHealth({ log, envoy, appUrl, appTimeoutMs: APP_TIMEOUT_MS });

    for (const warning of settingWarnings(config)) log.warning(warning, { step: "settings" });
    shutdown.onSignal((signal, count) => {
      if (count > 1) log.warning("{signal} ignored: the shutdown stage is already running", { step: "signal", signal });
    });
    const serviceConnectChecked = noticeServiceConnect(config.metadataUri, config.envoyAdminUrl, log, shutdown.signal);
    const managed = new ManagedProxyGuard(log, config.envoyAdminUrl);
    const listener = ingressListener(config.envoyIngressListener);
    await watchStartup({
      log,
      envoy,
      appUrl,
      appTimeoutMs: APP_TIMEOUT_MS,
      signal: shutdown.signal,
      drainChecks: config.drainMode === "connections"
        ? { drainTimeoutSeconds: config.drainTimeout, listenerSetting: config.envoyIngressListener, listener }
        : undefined,
      onServerInfo: (info) => managed.seen(info.nodeId),
    });
    if (!shutdown.signal.aborted) {
      await new Promise((resolve) => shutdown.signal.addEventListener("abort", resolve, { once: true }));
    }
    await serviceConnectChecked;
    if (await managed.confirmedAtShutdown(envoy)) {
      log.info(
        "{signal} received: ENVOY_ADMIN_URL is the Service Connect proxy, which ECS drains itself: exiting without calling it",
        {
          step: "exit",
          signal: String(shutdown.signal.reason),
        },
      );
      return ExitCode.Ok;
    }
    await runShutdown({
      log,
      envoy,
      listener,
      appUrl,
      appTimeoutMs: APP_TIMEOUT_MS,
      signalName: String(shutdown.signal.reason),
      plan: {
        drainDelayMs: config.drainDelay * 1000,
        drainTimeoutMs: config.drainTimeout * 1000,
        mode: config.drainMode,
        quietPeriodMs: config.drainQuietPeriod * 1000,
        pollIntervalMs: CONNECTION_POLL_INTERVAL_MS,
        appCheck: appUrl !== undefined,
      },
    });
    return ExitCode.Ok;
  },
};

/**
 * Says once at start what the helper does in a task that uses Service Connect. Task metadata is read in
 * the background and only informs: an endpoint that does not answer delays nothing.
 */
async function noticeServiceConnect(
  metadataUri: string | undefined,
  envoyAdminUrl: string,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  if (metadataUri === undefined) return;
  try {
    const task = await metadataClient(metadataUri, { timeoutMs: 1_000 }).task({
      signal,
      deadline: monotonicNow() + METADATA_BUDGET_MS,
    });
    const proxy = serviceConnectContainer(task);
    if (proxy === undefined) return;
    log.warning(serviceConnectNotice(proxy.Name, shownAdminUrl(envoyAdminUrl)), {
      step: "service-connect",
      container: proxy.Name,
    });
  } catch (error) {
    if (signal.aborted) return;
    const { error: code, message } = describeError(error);
    log.info("task metadata could not be read ({error}): whether the task uses Service Connect is not known", {
      step: "service-connect",
      error: code,
      detail: message,
    });
  }
}

/** The admin URL as logged: credentials in it masked, as in the start-up line. */
function shownAdminUrl(url: string): string {
  return String(loggableSettings({ url }).url);
}

/**
 * Never fights Service Connect's managed proxy: an Envoy whose node id is an ECS task set is that proxy,
 * and the helper neither fails its health check nor drains it. Decided from any `/server_info` answer at
 * start, or from one last read at SIGTERM when start-up never had one.
 */
class ManagedProxyGuard {
  /** Whether any `/server_info` answer was seen: the Envoy is known then, managed or not. */
  #answered = false;
  #managed = false;

  constructor(readonly log: Logger, readonly envoyAdminUrl: string) {}

  seen(nodeId: string | undefined): void {
    this.#answered = true;
    if (this.#managed || !isServiceConnectProxy(nodeId)) return;
    this.#managed = true;
    this.log.error(
      "ENVOY_ADMIN_URL={envoyAdminUrl} is the ECS Service Connect proxy (node {nodeId}): ECS manages and drains it, " +
        "so the helper will not fail its health check or drain it. Fix: point ENVOY_ADMIN_URL at an Envoy of the " +
        "task's own, or remove the helper",
      { step: "service-connect", envoyAdminUrl: shownAdminUrl(this.envoyAdminUrl), nodeId },
    );
  }

  /** Whether the Envoy is the managed proxy, asking it once (briefly) if start-up never had an answer. */
  async confirmedAtShutdown(envoy: EnvoyAdmin): Promise<boolean> {
    if (!this.#answered) {
      try {
        this.seen((await envoy.serverInfo({ timeoutMs: APP_TIMEOUT_MS })).nodeId);
      } catch {
        // Not answering: taken as the task's own Envoy. The managed proxy keeps its admin on a socket inside its
        // own container, so an address that reaches it at all answers at start.
      }
    }
    return this.#managed;
  }
}
