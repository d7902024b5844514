/**
 * Where the Docker Engine API listens, as `--docker-host` / `DOCKER_HOST` name it: read by the settings
 * (to fail at start) and by the Docker adapter (to connect), so it depends on neither.
 * @module
 */

export type DockerAddress = { readonly socketPath: string } | {
  readonly host: string;
  readonly port: number;
  readonly protocol: "http";
};

/** `unix:///path`, a bare `/path`, or `tcp://host:port` (plain HTTP; TLS-protected daemons are not supported). */
export function parseDockerHost(value: string): DockerAddress {
  if (value.startsWith("/")) return { socketPath: value };
  if (value.startsWith("unix://")) {
    const socketPath = value.slice("unix://".length);
    if (!socketPath.startsWith("/")) throw new Error("expected unix:///absolute/path");
    return { socketPath };
  }
  if (value.startsWith("tcp://")) {
    const url = new URL(value.replace(/^tcp:/, "http:"));
    return { host: url.hostname, port: Number(url.port || 2375), protocol: "http" };
  }
  throw new Error("expected unix:///path or tcp://host:port");
}
