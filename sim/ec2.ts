/**
 * Amazon EC2 emulator (EC2 query protocol): `DescribeInstances` for the container instances of bridge and
 * host tasks. Unknown ids answer `InvalidInstanceID.NotFound`, denied calls `UnauthorizedOperation`.
 * @module
 */
import { type AwsEmulator, startAwsEmulator } from "./aws_emulator.ts";
import { AwsError, awsQueryService, EC2_PROTOCOL, queryList } from "./aws_protocols.ts";
import type { Faults } from "./faults.ts";

export interface Ec2Instance {
  readonly instanceId: string;
  readonly privateIpAddress: string;
  readonly ipv6Address?: string;
}

export class Ec2State {
  readonly instances = new Map<string, Ec2Instance>();
  readonly denied = new Set<string>();

  constructor(readonly account = "123456789012") {}

  addInstance(instance: Ec2Instance): void {
    this.instances.set(instance.instanceId, instance);
  }

  describeInstances(params: URLSearchParams) {
    if (this.denied.has("DescribeInstances")) {
      throw new AwsError("UnauthorizedOperation", "You are not authorized to perform this operation.", 403);
    }
    const ids = queryList(params, "InstanceId") as string[];
    const missing = ids.filter((id) => !this.instances.has(id));
    if (missing.length > 0) {
      throw new AwsError("InvalidInstanceID.NotFound", `The instance ID '${missing.join("', '")}' does not exist`);
    }
    const instances = ids.length > 0 ? ids.map((id) => this.instances.get(id)!) : [...this.instances.values()];
    return {
      reservationSet: instances.map((i, n) => ({
        reservationId: `r-${String(n).padStart(17, "0")}`,
        ownerId: this.account,
        instancesSet: [{
          instanceId: i.instanceId,
          instanceState: { code: 16, name: "running" },
          privateIpAddress: i.privateIpAddress,
          ipv6Address: i.ipv6Address,
          networkInterfaceSet: [{
            privateIpAddress: i.privateIpAddress,
            ipv6AddressesSet: i.ipv6Address ? [{ ipv6Address: i.ipv6Address }] : undefined,
          }],
        }],
      })),
    };
  }
}

export type Ec2Emulator = AwsEmulator<Ec2State>;

export function startEc2Emulator(state: Ec2State = new Ec2State(), faults?: Faults): Promise<Ec2Emulator> {
  const framing = awsQueryService({
    ...EC2_PROTOCOL,
    operations: { DescribeInstances: (params) => state.describeInstances(params) },
  });
  return startAwsEmulator(framing, state, faults);
}
