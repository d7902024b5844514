/**
 * The startup stage: watch Envoy (and the app, when its health check is configured) until both can
 * serve, logging each change of answer and the moment each first becomes ready. Purely informational:
 * the gate itself is the `health` subcommand that ECS runs; these lines tell an operator why a task
 * is not healthy yet.
 * @module
 */
import { monotonicNow, sleep } from "../clock.ts";
import type { Logger } from "../log.ts";
import { describeError } from "../retry.ts";
import { describeAppAnswer, isServing, probeApp } from "./app_health.ts";
import { secondsSince } from "./elapsed.ts";
import type { EnvoyAdmin, IngressListener, ServerInfo } from "./envoy_admin.ts";

/** Local endpoints are cheap to ask; once a second keeps the "ready" line within a second of the truth. */
export const STARTUP_POLL_INTERVAL_MS = 1_000;

interface Check {
  readonly ready: boolean;
  /** The answer as logged; a new line is written only when it changes. */
  readonly answer: string;
  readonly fields?: Record<string, unknown>;
}

interface Dependency {
  readonly step: string;
  readonly answerField: "envoyAnswer" | "appAnswer";
  readonly readyMessage: string;
  readonly waitingMessage: string;
  check(signal: AbortSignal): Promise<Check>;
  /** Runs once, right after the first ready answer. */
  onReady?(signal: AbortSignal): Promise<void>;
}

/** What connections mode relies on, checked against Envoy once it is first LIVE. */
export interface DrainChecks {
  readonly drainTimeoutSeconds: number;
  /** ENVOY_INGRESS_LISTENER as set (or its default), for the warning. */
  readonly listenerSetting: string;
  readonly listener: IngressListener;
}

export interface StartupWatch {
  readonly log: Logger;
  readonly envoy: EnvoyAdmin;
  readonly appUrl: string | undefined;
  readonly appTimeoutMs: number;
  /** Aborts on the first shutdown signal: the watch ends at once. */
  readonly signal: AbortSignal;
  /** Connections mode: check Envoy's drain time and the ingress listener once Envoy is LIVE. */
  readonly drainChecks?: DrainChecks;
  /** Told every `/server_info` answer: who this Envoy is. */
  readonly onServerInfo?: (info: ServerInfo) => void;
}

function dependencies(watch: StartupWatch): Dependency[] {
  let drainTimeSeconds: number | undefined;
  const envoy: Dependency = {
    step: "envoy-startup",
    answerField: "envoyAnswer",
    readyMessage: "Envoy is live",
    waitingMessage: "waiting for Envoy to become live",
    async check(signal) {
      try {
        const info = await watch.envoy.serverInfo({ signal });
        drainTimeSeconds = info.drainTimeSeconds;
        watch.onServerInfo?.(info);
        return { ready: info.state === "LIVE", answer: info.state, fields: { envoyVersion: info.version } };
      } catch (error) {
        if (signal.aborted) throw error;
        return { ready: false, answer: describeError(error).message };
      }
    },
    onReady: async (signal) => {
      if (watch.drainChecks !== undefined) await checkEnvoyForDrain(watch, watch.drainChecks, drainTimeSeconds, signal);
    },
  };
  if (watch.appUrl === undefined) return [envoy];
  const appUrl = watch.appUrl;
  const app: Dependency = {
    step: "app-startup",
    answerField: "appAnswer",
    readyMessage: "the app answers its health check",
    waitingMessage: "waiting for the app to answer its health check",
    async check(signal) {
      const answer = await probeApp(appUrl, watch.appTimeoutMs, signal);
      return { ready: isServing(answer), answer: describeAppAnswer(answer), fields: { appUrl } };
    },
  };
  return [envoy, app];
}

/** Returns once every dependency has been ready once, or as soon as `signal` aborts. */
export async function watchStartup(watch: StartupWatch): Promise<void> {
  const started = monotonicNow();
  const pending = dependencies(watch);
  const lastAnswers = new Map<Dependency, string>();
  try {
    while (pending.length > 0) {
      for (const dependency of [...pending]) {
        const check = await dependency.check(watch.signal);
        if (watch.signal.aborted) return;
        const fields = {
          step: dependency.step,
          waitedSeconds: secondsSince(started),
          [dependency.answerField]: check.answer,
          ...check.fields,
        };
        if (check.ready) {
          watch.log.info(dependency.readyMessage, fields);
          pending.splice(pending.indexOf(dependency), 1);
          await dependency.onReady?.(watch.signal);
        } else if (lastAnswers.get(dependency) !== check.answer) {
          watch.log.info(dependency.waitingMessage, fields);
          lastAnswers.set(dependency, check.answer);
        }
      }
      if (pending.length > 0 && !await sleep(STARTUP_POLL_INTERVAL_MS, watch.signal)) return;
    }
  } catch (error) {
    if (watch.signal.aborted) return;
    throw error;
  }
  watch.log.info("startup stage complete: waiting for SIGTERM", {
    step: "startup-complete",
    waitedSeconds: secondsSince(started),
  });
}

/**
 * Warns about what would make connections mode end wrong, while there is time to fix it: an Envoy drain
 * time shorter than DRAIN_TIMEOUT (an Envoy older than 1.29 ignores `skip_exit` and stops its inbound
 * listeners when that time ends), and an ENVOY_INGRESS_LISTENER that matches no listener Envoy has.
 */
async function checkEnvoyForDrain(
  watch: StartupWatch,
  checks: DrainChecks,
  drainTimeSeconds: number | undefined,
  signal: AbortSignal,
): Promise<void> {
  if (drainTimeSeconds !== undefined && drainTimeSeconds < checks.drainTimeoutSeconds) {
    watch.log.warning(
      `Envoy's drain time is ${drainTimeSeconds} s, shorter than DRAIN_TIMEOUT (${checks.drainTimeoutSeconds} s): ` +
        "the helper drains with skip_exit so that Envoy keeps accepting, but an Envoy older than 1.29 ignores it " +
        "and stops its inbound listeners when its drain time ends (App Mesh sets it from LISTENER_DRAIN_WAIT_TIME_S)",
      { step: "envoy-check", drainTimeSeconds, drainTimeoutSeconds: checks.drainTimeoutSeconds },
    );
  }
  let listeners: string[];
  try {
    listeners = await watch.envoy.listenerNames({ signal });
  } catch (error) {
    if (signal.aborted) return;
    watch.log.warning("Envoy's listeners cannot be listed: ENVOY_INGRESS_LISTENER is not checked", {
      step: "envoy-check",
      envoyAnswer: describeError(error).message,
    });
    return;
  }
  const matches = listeners.some((name) => checks.listener.counterOf(`listener.${name}.downstream_cx_total`));
  if (!matches) {
    watch.log.warning(
      `no Envoy listener matches ENVOY_INGRESS_LISTENER=${checks.listenerSetting}: connections mode cannot count ` +
        `inbound connections and will hold every drain to DRAIN_TIMEOUT; Envoy's listeners: ${
          listeners.join(", ") || "none"
        }`,
      { step: "envoy-check", envoyIngressListener: checks.listenerSetting, envoyListeners: listeners },
    );
  }
}
