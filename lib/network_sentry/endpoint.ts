/**
 * Where the probe goes: the regional ECS endpoint of a region, and whether the HTTPS proxy is used for
 * it (`NO_PROXY` as curl reads it).
 * @module
 */
import { BlockList, isIP } from "node:net";

/** `https://ecs.<region>.amazonaws.com`, or `.amazonaws.com.cn` in the China partition. */
export function regionalEndpoint(region: string): string {
  const suffix = region.startsWith("cn-") ? "amazonaws.com.cn" : "amazonaws.com";
  return `https://ecs.${region}.${suffix}`;
}

/**
 * The proxy for `target`, or `undefined` when it is reached directly. `noProxy` entries: `*` (all), a
 * host name (matching itself and its subdomains), `.suffix`, `host:port` (that port only), an IP, or a
 * CIDR range (`10.0.0.0/8`, `fd00::/8`). As in curl (7.86 and later), a range matches only a target
 * written as an IP address: names are not resolved to be compared with it.
 */
export function proxyFor(target: URL, httpsProxy: string | undefined, noProxy: string | undefined): string | undefined {
  if (httpsProxy === undefined) return undefined;
  const host = target.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const port = target.port || "443";
  for (const raw of (noProxy ?? "").split(",")) {
    const entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return undefined;
    if (entry.includes("/")) {
      if (inRange(host, entry)) return undefined;
      continue;
    }
    const [entryHost, entryPort] = splitHostPort(entry);
    if (entryPort !== undefined && entryPort !== port) continue;
    const name = entryHost.replace(/^\*?\./, "");
    if (host === name || host.endsWith(`.${name}`)) return undefined;
  }
  return httpsProxy;
}

/** `host`, `host:port`, `[v6]`, `[v6]:port`; a bare IPv6 address has no port. */
function splitHostPort(entry: string): [string, string | undefined] {
  const bracketed = entry.match(/^\[([^\]]+)\](?::(\d+))?$/);
  if (bracketed) return [bracketed[1], bracketed[2]];
  const parts = entry.split(":");
  return parts.length === 2 ? [parts[0], parts[1]] : [entry, undefined];
}

/** Whether the IP literal `host` lies in the CIDR range `entry`; a malformed range matches nothing. */
function inRange(host: string, entry: string): boolean {
  const [network, bits] = entry.split("/");
  const family = isIP(network);
  if (family === 0 || family !== isIP(host) || !/^\d{1,3}$/.test(bits)) return false;
  const type = family === 4 ? "ipv4" : "ipv6";
  const prefix = Number(bits);
  if (prefix > (family === 4 ? 32 : 128)) return false;
  const range = new BlockList();
  range.addSubnet(network, prefix, type);
  return range.check(host, type);
}
