/**
 * The sidecar's optional permissions: each one it may lack costs a check or a refinement, never the drain.
 * A denied call is said once, at start, as a warning that names the permission and what is lost, so that
 * an operator who meant to grant it sees it, and one who chose not to knows the price.
 * @module
 */
import type { Logger } from "../log.ts";

/** Where the task role's policies are, for every fix that is a permission. */
export const IAM_FIX = "allow it in the task role's policy (examples/iam/nlb-sidecar-*.json)";

export type OptionalPermission = "elasticloadbalancing:DescribeTargetGroupAttributes" | "ecs:DescribeTaskDefinition";

/** The one start-up line for an optional permission the task role does not grant. */
export function warnPermissionMissing(
  log: Logger,
  permission: OptionalPermission,
  lost: string,
  fields: Record<string, unknown> = {},
): void {
  log.warning("{permission} is not allowed: {lost}. Fix: {fix} (optional: nothing else changes)", {
    permission,
    lost,
    fix: IAM_FIX,
    ...fields,
  });
}
