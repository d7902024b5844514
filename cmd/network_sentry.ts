/** `ecs-network-sentry`: the ECS Anywhere host daemon (see docs/network-sentry.md). */
import { runRole } from "../lib/lifecycle.ts";
import { networkSentryProgram } from "../lib/network_sentry/program.ts";

if (import.meta.main) Deno.exit(await runRole(networkSentryProgram));
