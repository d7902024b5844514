/**
 * `ecs-appmesh-helper health`, run by ECS as the helper container's `healthCheck` (the image has no
 * shell): healthy only when Envoy's `/ready` says LIVE and, when configured, the app answers 2xx/3xx.
 * With the app and Envoy containers in the helper's `dependsOn`, ECS then counts a new task healthy
 * only once its proxy and app can serve.
 * @module
 */
import { ExitCode } from "../lifecycle.ts";
import type { Logger } from "../log.ts";
import { describeError } from "../retry.ts";
import { type AppAnswer, describeAppAnswer, isServing, probeApp } from "./app_health.ts";
import type { EnvoyAdmin, Readiness } from "./envoy_admin.ts";

export interface HealthCheck {
  readonly log: Logger;
  readonly envoy: EnvoyAdmin;
  readonly appUrl: string | undefined;
  readonly appTimeoutMs: number;
}

/** One line on stdout with both answers; exit 0 when healthy, 1 when not. */
export async function checkHealth(check: HealthCheck): Promise<number> {
  const [envoy, app] = await Promise.all([
    check.envoy.ready().then(
      (readiness): Readiness => readiness,
      (error): Readiness => ({ live: false, state: describeError(error).message }),
    ),
    check.appUrl === undefined ? undefined : probeApp(check.appUrl, check.appTimeoutMs),
  ]);
  const healthy = envoy.live && (app === undefined || isServing(app));
  const fields = {
    step: "health",
    healthy,
    envoyAnswer: envoy.state,
    ...(app === undefined ? {} : { appAnswer: describeAppAnswer(app), appUrl: check.appUrl }),
  };
  if (healthy) {
    check.log.info("healthy: Envoy is live" + (app === undefined ? "" : " and the app answers"), fields);
    return ExitCode.Ok;
  }
  check.log.warning("unhealthy: " + reason(envoy, app), fields);
  return ExitCode.Failure;
}

function reason(envoy: Readiness, app: AppAnswer | undefined): string {
  const problems: string[] = [];
  if (!envoy.live) problems.push("Envoy is not live");
  if (app !== undefined && !isServing(app)) problems.push("the app does not answer 2xx/3xx");
  return problems.join(" and ");
}
