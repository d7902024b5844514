/**
 * The AWS clients the sidecar uses, all built with the project's shared client configuration (one
 * attempt per call, hard timeouts, lean credentials). EC2 is only needed for `ip` targets of bridge and
 * host tasks, so its client is loaded on first use and most sidecars never load it.
 * @module
 */
import { ECSClient } from "@aws-sdk/client-ecs";
import { ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import type { EC2Client } from "@aws-sdk/client-ec2";
import { awsClientConfig } from "../aws.ts";

export interface SidecarClients {
  readonly ecs: ECSClient;
  readonly elbv2: ElasticLoadBalancingV2Client;
  ec2(): Promise<EC2Client>;
}

export function sidecarClients(
  region: string,
  env: Readonly<Record<string, string | undefined>>,
  timeoutMs?: number,
): SidecarClients {
  const config = awsClientConfig({ region, timeoutMs }, env);
  let ec2: Promise<EC2Client> | undefined;
  return {
    ecs: new ECSClient(config),
    elbv2: new ElasticLoadBalancingV2Client(config),
    ec2: () => ec2 ??= import("./ec2.ts").then((m) => new m.EC2Client(config)),
  };
}
