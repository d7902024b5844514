/** The project version, read from deno.json so there is one place to bump it. */
import denoConfig from "../deno.json" with { type: "json" };

/**
 * The version every binary prints for `--version` and logs at start.
 *
 * @example
 * ```ts
 * console.log(`ecs-lifecycle ${VERSION}`);
 * ```
 */
export const VERSION: string = denoConfig.version;
