/**
 * An AWS service emulator as tests use it: the loopback server, the state the test edits, and the log of
 * calls made (faulted ones included). Each service module only supplies its framing and operations.
 * @module
 */
import type { AwsEmulatorFraming, CallLog } from "./aws_protocols.ts";
import type { Faults } from "./faults.ts";
import { type SimServer, startSimServer } from "./http_server.ts";

export interface AwsEmulator<State> extends SimServer {
  readonly state: State;
  readonly calls: CallLog;
}

export async function startAwsEmulator<State>(
  framing: AwsEmulatorFraming,
  state: State,
  faults?: Faults,
): Promise<AwsEmulator<State>> {
  const server = await startSimServer({ ...framing, faults });
  return Object.assign(server, { state, calls: framing.calls });
}
