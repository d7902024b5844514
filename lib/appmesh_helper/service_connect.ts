/**
 * The helper beside ECS Service Connect, App Mesh's successor. Service Connect's proxy is managed: ECS
 * adds it to the task, drains it when the task stops (the ECS agent asks its agent to
 * `/drain_listeners?inboundonly` over a unix socket on the host, amazon-ecs-agent
 * agent/engine/serviceconnect/manager_linux.go; Envoy's drain time is 20 s) and keeps its admin interface
 * private (`ENVOY_ADMIN_MODE=uds`, a socket inside the proxy's container). The helper has no part in that:
 * it gates and drains only an Envoy of the task's own, and never calls the managed proxy.
 * @module
 */

/**
 * Service Connect bootstraps its Envoy with the service's task set ARN as node id
 * (`arn:aws:ecs:us-west-2:123456789012:task-set/MyCluster/MyService/ecs-svc/1234567890123456789`,
 * aws/amazon-ecs-service-connect-agent agent/envoy_bootstrap/envoy_bootstrap.go `appendStats`); App Mesh's
 * is the virtual node's or gateway's ARN or `mesh/<mesh>/<type>/<name>`, and any other Envoy's is its own.
 */
const TASK_SET_ARN = /^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task-set\//;

/** Whether the Envoy whose `/server_info` names `nodeId` is Service Connect's managed proxy. */
export function isServiceConnectProxy(nodeId: string | undefined): boolean {
  return nodeId !== undefined && TASK_SET_ARN.test(nodeId);
}

/** What the helper does and does not do in a task that uses Service Connect, said once at start. */
export function serviceConnectNotice(proxyContainer: string, envoyAdminUrl: string): string {
  return `this task uses ECS Service Connect (container ${proxyContainer}): ECS drains that proxy itself when ` +
    "the task stops, and the helper never calls it; the helper gates health on, and on SIGTERM fails and drains, " +
    `only the Envoy at ENVOY_ADMIN_URL=${envoyAdminUrl}, an Envoy of this task's own. If Service Connect is ` +
    "the task's only proxy, remove the helper: its health check waits for an Envoy that is not there";
}
