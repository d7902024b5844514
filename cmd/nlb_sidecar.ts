/** `ecs-nlb-sidecar`: see docs/nlb-sidecar.md. */
import { runRole } from "../lib/lifecycle.ts";
import { nlbSidecarProgram } from "../lib/nlb_sidecar/program.ts";

if (import.meta.main) Deno.exit(await runRole(nlbSidecarProgram));
