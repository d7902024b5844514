/**
 * The network sentry's settings: the original eINS flags with their short forms and defaults, then the
 * new ones. One declaration each; `--help` and the README table are generated from here.
 * @module
 */
import {
  ConfigError,
  type ConfigOf,
  integer,
  isRegionName,
  oneOf,
  seconds,
  type Setting,
  text,
  toggle,
  url,
} from "../config.ts";
import { logFormatSetting, logLevelSetting } from "../log.ts";
import { parseDockerHost } from "./docker_address.ts";
import { STRATEGIES } from "./machine.ts";

/** The role's settings, each declared once below; parsed values are `ConfigOf<NetworkSentrySettings>`. */
export type NetworkSentrySettings = typeof networkSentrySettings;

export const networkSentrySettings = {
  // Not `required` here: the daemon needs it, `status` and `resume` do not (see validateSettings).
  region: text({
    flag: "region",
    short: "r",
    type: "region",
    help: "AWS region of the ECS cluster that manages this external instance (e.g. eu-west-1); required by the daemon.",
  }),
  interval: seconds({
    flag: "interval",
    short: "i",
    default: 20,
    above: 0,
    help: "Seconds between connectivity probes.",
  }),
  retries: integer({
    flag: "retries",
    short: "n",
    default: 0,
    help: "How often Docker restarts a failing container while offline (on-failure MaximumRetryCount; 0 = unlimited).",
  }),
  logFile: text({
    flag: "logfile",
    short: "l",
    default: "/tmp/ecs-external-instance-network-sentry.log",
    type: "path",
    help: "Log file (text lines, rotated at 5 MiB, 5 files kept), written besides stdout.",
  }),
  logLevel: logLevelSetting({ flag: "loglevel", short: "k", default: "info" }),
  logFormat: logFormatSetting(),
  endpoint: url({
    flag: "endpoint",
    help: "ECS API endpoint to probe (e.g. an interface VPC endpoint); default the regional one " +
      "(ecs.<region>.amazonaws.com[.cn]). It must answer as ECS does: other answers count as proxy-error.",
  }),
  timeout: seconds({
    flag: "timeout",
    default: 5,
    above: 0,
    help: "Seconds a probe may take in all (DNS, connect, proxy tunnel, TLS, answer) before it counts as failed.",
  }),
  caFile: text({
    flag: "ca-file",
    type: "path",
    help: "PEM file of extra CA certificates trusted besides the built-in roots (TLS-inspecting proxies); " +
      "read once at start.",
  }),
  httpsProxy: proxyUrl({
    env: "HTTPS_PROXY",
    flag: "https-proxy",
    help: "http:// proxy the probe tunnels through with CONNECT (else https_proxy); host:port without a scheme " +
      "means http://, as in curl; credentials in the URL are sent as Basic auth.",
  }),
  noProxy: text({
    env: "NO_PROXY",
    flag: "no-proxy",
    type: "hosts",
    help: "Comma-separated hosts that bypass the proxy (else no_proxy): name, .suffix, host:port, IP, CIDR " +
      "(matches IP targets only), or * for all.",
  }),
  failureThreshold: integer({
    flag: "failure-threshold",
    default: 2,
    min: 1,
    max: 1000,
    help: "Consecutive failed probes before the host goes offline.",
  }),
  recoveryThreshold: integer({
    flag: "recovery-threshold",
    default: 2,
    min: 1,
    max: 1000,
    help: "Consecutive successful probes before containers are handed back to the ECS agent.",
  }),
  restartStrategy: oneOf({
    flag: "restart-strategy",
    default: "cleanup",
    choices: STRATEGIES,
    help: "What happens to containers Docker restarted during the outage once online (see the strategies section).",
  }),
  cutoverTimeout: seconds({
    flag: "cutover-timeout",
    default: 300,
    help: "cutover: remove a restarted container after this long even if the agent started no replacement.",
  }),
  cutoverSettle: seconds({
    flag: "cutover-settle",
    default: 10,
    help: "cutover: the agent's replacement counts once it has run this long (or reports healthy).",
  }),
  dockerHost: text({
    env: "DOCKER_HOST",
    flag: "docker-host",
    default: "unix:///var/run/docker.sock",
    type: "unix://path|tcp://host:port",
    help: "Docker Engine API address.",
  }),
  agentContainer: text({
    flag: "agent-container",
    default: "ecs-agent",
    type: "name",
    help: "Name of the ECS agent's container, paused while offline.",
  }),
  // The flag keeps its first name; the file is the journal. The status file (`<name>.status.json`) sits beside it.
  journalFile: text({
    flag: "state-file",
    default: "/var/lib/ecs-network-sentry/state.json",
    type: "path",
    help: "The journal: what the sentry changed, written atomically before each step and resumed on start. Probe " +
      "streaks for status go beside it in <name>.status.json.",
  }),
  metricsFile: text({
    flag: "metrics-file",
    type: "path",
    help: "Prometheus text file for node_exporter's textfile collector (name it *.prom), rewritten every probe.",
  }),
  dryRun: toggle({
    flag: "dry-run",
    help: "Log every action the sentry would take; change nothing in Docker and write no journal.",
  }),
  once: toggle({ flag: "once", help: "Run one probe and one reconcile, then exit." }),
};

export type NetworkSentryConfig = ConfigOf<NetworkSentrySettings>;

/** A proxy URL; `host:port` without a scheme is an http:// proxy, as curl takes it (`-x`, `https_proxy`). */
function proxyUrl<const O extends Parameters<typeof url>[0]>(o: O) {
  const setting = url(o);
  return {
    ...setting,
    parse: (raw: string) => setting.parse(/^[a-z][a-z\d+.-]*:\/\//i.test(raw.trim()) ? raw : `http://${raw.trim()}`),
  };
}

type Environment = Readonly<Record<string, string | undefined>>;

/**
 * The proxy settings in force: the flag or the upper-case variable (already in `config`), else the
 * lower-case spelling that curl and Python also read.
 */
export function proxySettings(
  config: NetworkSentryConfig,
  env: Environment,
): { readonly httpsProxy?: string; readonly noProxy?: string } {
  return {
    httpsProxy: config.httpsProxy ?? fromLowerCaseEnv(networkSentrySettings.httpsProxy, env),
    noProxy: config.noProxy ?? fromLowerCaseEnv(networkSentrySettings.noProxy, env),
  };
}

function fromLowerCaseEnv<T>(setting: Setting<T>, env: Environment): T | undefined {
  const name = setting.env!.toLowerCase();
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  try {
    return setting.parse(raw);
  } catch (error) {
    throw new ConfigError(name, raw, (error as Error).message);
  }
}

/**
 * Checks across settings, run before anything starts: every problem, one error each, naming its flag. `subcommand` is
 * `undefined` for the daemon, the only form that probes a region.
 */
export function validateSettings(
  config: NetworkSentryConfig,
  env: Environment = {},
  subcommand?: string,
): ConfigError[] {
  const errors: ConfigError[] = [];
  if (config.region === undefined) {
    if (subcommand === undefined) errors.push(new ConfigError("--region", undefined, "is required"));
  } else if (!isRegionName(config.region)) {
    errors.push(new ConfigError("--region", config.region, "expected an AWS region name such as eu-west-1"));
  }
  if (config.endpoint !== undefined && !config.endpoint.startsWith("https://")) {
    errors.push(new ConfigError("--endpoint", config.endpoint, "must be an https:// URL (the probe checks TLS)"));
  }
  try {
    const { httpsProxy } = proxySettings(config, env);
    if (httpsProxy !== undefined && !httpsProxy.startsWith("http://")) {
      const source = config.httpsProxy === undefined ? "https_proxy" : "--https-proxy";
      errors.push(new ConfigError(source, httpsProxy, "only http:// proxies are supported"));
    }
  } catch (error) {
    // A lower-case https_proxy or no_proxy that does not parse.
    if (!(error instanceof ConfigError)) throw error;
    errors.push(error);
  }
  try {
    parseDockerHost(config.dockerHost);
  } catch (error) {
    errors.push(new ConfigError("--docker-host", config.dockerHost, (error as Error).message));
  }
  return errors;
}
