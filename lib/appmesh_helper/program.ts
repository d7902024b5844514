/**
 * The appmesh-helper role: the startup stage (log when Envoy and the app can serve), the `health`
 * subcommand (the container's ECS health check), and the shutdown stage on the first SIGTERM/SIGINT.
 * @module
 */
import { ExitCode, type RoleProgram } from "../lifecycle.ts";
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
import { runShutdown } from "./shutdown.ts";
import { watchStartup } from "./startup.ts";

/** How long the app may take to answer its health check before it counts as not answering. */
export const APP_TIMEOUT_MS = 2_000;

/**
 * Envoy's stats are read this often once its health check has failed: a restarted Envoy is failed again
 * within this long, and in connections mode the exit comes at most this late after the quiet period.
 */
export const CONNECTION_POLL_INTERVAL_MS = 500;

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
    });
    if (!shutdown.signal.aborted) {
      await new Promise((resolve) => shutdown.signal.addEventListener("abort", resolve, { once: true }));
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
