/**
 * Which of a container's port mappings serve a target group, by the group's protocol. One definition for
 * discovery and for the ECS emulator, which registers the task's targets by it; the tests check both
 * against ports written out by hand, so a mistake here cannot pass by agreeing with itself.
 * @module
 */

/** UDP-only protocols are served by udp mappings, the dual ones by tcp first and then udp, the rest by tcp. */
export function mappingProtocols(protocol: string | undefined): Array<"tcp" | "udp"> {
  if (protocol === "UDP" || protocol === "QUIC") return ["udp"];
  if (protocol === "TCP_UDP" || protocol === "TCP_QUIC") return ["tcp", "udp"];
  return ["tcp"];
}
