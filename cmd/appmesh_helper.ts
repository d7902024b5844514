/** `ecs-appmesh-helper`: the App Mesh / Envoy task helper's binary entry. */
import { runRole } from "../lib/lifecycle.ts";
import { appmeshHelperProgram } from "../lib/appmesh_helper/program.ts";

if (import.meta.main) Deno.exit(await runRole(appmeshHelperProgram));
