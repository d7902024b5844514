/**
 * The shutdown stage's I/O: carries out the actions of {@link ShutdownMachine} against Envoy and the
 * app and feeds back what it saw, one log line per step. Nothing here fails the stage: an Envoy that
 * does not answer is logged and the waits still happen, so the task's containers are never stopped
 * earlier than the operator asked. Every wait and deadline is on {@link monotonicNow}: a step of the wall
 * clock (NTP, a resumed VM) neither stretches DRAIN_DELAY or DRAIN_TIMEOUT nor cuts them short.
 * @module
 */
import { monotonicNow, sleep } from "../clock.ts";
import type { Logger } from "../log.ts";
import { describeError, retry } from "../retry.ts";
import { type AppAnswer, describeAppAnswer, probeApp } from "./app_health.ts";
import { secondsSince } from "./elapsed.ts";
import type { CallOptions, EnvoyAdmin, IngressListener } from "./envoy_admin.ts";
import {
  type Action,
  type EnvoyReading,
  type ExitReason,
  type HoldReason,
  ShutdownMachine,
  type ShutdownPlan,
} from "./machine.ts";

/** "Retried briefly": an Envoy that has not taken the fail call within this long is not waited for. */
export const ENVOY_CALL_BUDGET_MS = 5_000;

const ENVOY_BACKOFF = { baseMs: 250, capMs: 1_000 };

export interface ShutdownStage {
  readonly log: Logger;
  readonly envoy: EnvoyAdmin;
  readonly listener: IngressListener;
  readonly appUrl: string | undefined;
  readonly appTimeoutMs: number;
  readonly plan: ShutdownPlan;
  /** The signal that started the stage, for the log. */
  readonly signalName: string;
}

/** Runs the stage to its end and returns why it ended. Never throws for Envoy or app failures. */
export async function runShutdown(stage: ShutdownStage): Promise<ExitReason> {
  const { log, plan } = stage;
  const machine = new ShutdownMachine(plan, monotonicNow());
  const waited = () => secondsSince(machine.startedAt);
  log.info("{signal} received: shutdown stage begins", {
    step: "signal",
    signal: stage.signalName,
    waitedSeconds: 0,
    drainMode: plan.mode,
    failInSeconds: plan.drainDelayMs / 1000,
    exitAtLatestInSeconds: (plan.drainDelayMs + plan.drainTimeoutMs) / 1000,
  });
  const reader = envoyReader(stage, waited);
  let listenersDrained = false;
  let holdReason: HoldReason | undefined;
  let action: Action = machine.start();
  for (;;) {
    switch (action.kind) {
      case "check-app": {
        const answer = await probeApp(stage.appUrl!, stage.appTimeoutMs);
        const next = machine.step(monotonicNow(), { kind: "app-checked", result: answer.kind });
        const fields = { step: "app-check", waitedSeconds: waited(), appAnswer: describeAppAnswer(answer) };
        if (answer.kind === "failed") log.warning(appCheckMessage(answer, next), fields);
        else log.info(appCheckMessage(answer, next), fields);
        action = next;
        break;
      }
      case "wait": {
        if (action.purpose === "drain-delay") logWait(log, action.purpose, waited(), action.untilMs - monotonicNow());
        if (action.purpose === "drain-timeout") {
          logWait(log, action.purpose, waited(), machine.deadline - monotonicNow());
        }
        await sleep(action.untilMs - monotonicNow());
        action = machine.step(monotonicNow(), { kind: "waited" });
        break;
      }
      case "fail-envoy": {
        if (action.cause === "envoy-restarted") {
          log.warning(
            "Envoy is LIVE again mid-drain (restarted by its agent, or its health check was reset): " +
              "failing its health check again",
            { step: "envoy-restarted", waitedSeconds: waited(), restarts: machine.restarts },
          );
        }
        const told = await tellEnvoy(stage, action, waited);
        listenersDrained = told.listenersDrained;
        action = machine.step(monotonicNow(), { kind: "envoy-failed", accepted: told.healthcheckFailed });
        break;
      }
      case "read-envoy": {
        const reading = await reader(action.deadlineMs, plan.mode === "connections" && machine.envoyAccepted);
        action = machine.step(monotonicNow(), { kind: "envoy-read", reading });
        if (machine.holdReason !== holdReason) {
          holdReason = machine.holdReason;
          if (holdReason !== undefined) {
            log.warning(HOLD_MESSAGES[holdReason], { step: "drain-connections", waitedSeconds: waited(), holdReason });
          }
        }
        break;
      }
      case "exit": {
        log.info(EXIT_MESSAGES[action.reason], {
          step: "exit",
          reason: action.reason,
          waitedSeconds: waited(),
          envoyFailed: machine.envoyAccepted,
          envoyRestarts: machine.restarts,
          ...(plan.mode === "connections"
            ? { listenersDrained, connectionsLeft: machine.connectionsLeft ?? null, holdReason: holdReason ?? null }
            : {}),
        });
        return action.reason;
      }
    }
  }
}

const EXIT_MESSAGES: Record<ExitReason, string> = {
  "app-gone": "exiting at once: the app was already gone",
  "drain-timeout": "exiting: DRAIN_TIMEOUT is over",
  "connections-drained": "exiting: the ingress listener has had no connections for DRAIN_QUIET_PERIOD",
};

const HOLD_MESSAGES: Record<HoldReason, string> = {
  "listener-stopped": "Envoy has stopped a listener: connections it refuses never show in its counters, " +
    "so a lull proves nothing; holding to DRAIN_TIMEOUT",
  "listener-stats-gone": "Envoy has no stats for the ingress listener (ENVOY_INGRESS_LISTENER): a lull cannot be " +
    "seen, so holding to DRAIN_TIMEOUT",
};

/** Says what the machine made of the app's answer: gone, once more to confirm, or draining. */
function appCheckMessage(answer: AppAnswer, next: Action): string {
  if (next.kind === "exit") return "the app does not answer: it is gone, nothing to drain";
  if (next.kind === "check-app") return "the app did not answer in time: asking once more before taking it as gone";
  if (answer.kind === "answered") return "the app answers: draining";
  return "the app's health check failed in a way that does not prove it gone: draining as usual";
}

function logWait(log: Logger, purpose: "drain-delay" | "drain-timeout", waitedSeconds: number, ms: number) {
  const seconds = ms / 1000;
  const message = purpose === "drain-delay"
    ? "waiting DRAIN_DELAY so that new tasks come into service before Envoy fails its health check"
    : "waiting DRAIN_TIMEOUT while downstreams stop sending to this task";
  log.info(message, { step: purpose, waitedSeconds, forSeconds: Math.max(0, Math.round(seconds * 1000) / 1000) });
}

/** Which of the calls that tell Envoy to drain it took. */
interface EnvoyTold {
  readonly healthcheckFailed: boolean;
  readonly listenersDrained: boolean;
}

/** Fails Envoy's health check and, when asked, drains its inbound listeners. */
async function tellEnvoy(
  stage: ShutdownStage,
  action: Extract<Action, { kind: "fail-envoy" }>,
  waited: () => number,
): Promise<EnvoyTold> {
  const call = async (step: string, message: string, send: (options: CallOptions) => Promise<string>) => {
    const giveUpAt = Math.min(monotonicNow() + ENVOY_CALL_BUDGET_MS, action.deadlineMs);
    try {
      const answer = await retry(() => send({ timeoutMs: timeLeft(stage.envoy, giveUpAt) }), {
        deadline: giveUpAt,
        backoff: ENVOY_BACKOFF,
        onRetry: (error, _attempt, delayMs) =>
          stage.log.warning("Envoy did not take the call, retrying", {
            step,
            waitedSeconds: waited(),
            envoyAnswer: describeError(error).message,
            retryInMs: delayMs,
          }),
      });
      stage.log.info(message, { step, waitedSeconds: waited(), envoyAnswer: answer });
      return true;
    } catch (error) {
      stage.log.error("Envoy did not take the call; the drain waits go on regardless", {
        step,
        waitedSeconds: waited(),
        envoyAnswer: describeError(error).message,
      });
      return false;
    }
  };
  const healthcheckFailed = await call(
    "healthcheck-fail",
    "Envoy now fails its health check: downstreams stop sending new requests",
    (options) => stage.envoy.failHealthcheck(options),
  );
  const listenersDrained = healthcheckFailed && action.drainListeners && await call(
    "drain-listeners",
    "Envoy is draining its inbound listeners: each connection closes after its next response",
    (options) => stage.envoy.drainInboundListeners(options),
  );
  return { healthcheckFailed, listenersDrained };
}

/** A per-call timeout that never runs past `deadline` (and is never zero, which would abort at once). */
function timeLeft(envoy: EnvoyAdmin, deadline: number): number {
  return Math.max(50, Math.min(envoy.timeoutMs, deadline - monotonicNow()));
}

/**
 * Reads Envoy's state and uptime and, in connections mode, its stopped listeners and ingress counters.
 * Logs only when what an operator would want to know changes: the open connections, whether new ones
 * arrived since the previous read, or why the count is unknown. In fixed mode only whether Envoy can be
 * read is logged when it changes: while it cannot, a restart would go unnoticed.
 */
function envoyReader(stage: ShutdownStage, waited: () => number) {
  let lastLogged: string | undefined;
  let previous: EnvoyReading | undefined;
  return async (deadline: number, counting: boolean): Promise<EnvoyReading | undefined> => {
    let reading: EnvoyReading | undefined;
    let envoyAnswer: string;
    try {
      // Up to two calls: one signal keeps both within the deadline.
      const timeoutMs = timeLeft(stage.envoy, deadline);
      const signal = AbortSignal.timeout(timeoutMs);
      reading = await stage.envoy.drainReading(counting ? stage.listener : undefined, { timeoutMs, signal });
      envoyAnswer = counting && reading.ingress === undefined
        ? "no listener matches ENVOY_INGRESS_LISTENER"
        : "HTTP 200";
    } catch (error) {
      envoyAnswer = describeError(error).message;
    }
    const count = reading?.ingress;
    const connectionsArriving = count !== undefined && previous?.ingress !== undefined &&
      count.accepted !== previous.ingress.accepted;
    previous = reading;
    const summary = counting ? `${count?.active}/${connectionsArriving}/${envoyAnswer}` : String(reading === undefined);
    if (summary !== lastLogged) {
      const first = lastLogged === undefined;
      lastLogged = summary;
      if (counting) {
        const fields = {
          step: "drain-connections",
          waitedSeconds: waited(),
          connectionsLeft: count?.active ?? null,
          connectionsArriving,
          envoyAnswer,
        };
        if (count === undefined) {
          stage.log.warning("ingress connections unknown: waiting on, at most until DRAIN_TIMEOUT is over", fields);
        } else {
          stage.log.info("ingress connections counted", fields);
        }
      } else if (reading === undefined || !first) {
        stage.log.info(
          reading === undefined
            ? "Envoy's stats cannot be read: a restart would go unnoticed"
            : "Envoy's stats read again",
          { step: "envoy-watch", waitedSeconds: waited(), envoyAnswer },
        );
      }
    }
    return reading;
  };
}
