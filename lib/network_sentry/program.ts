/**
 * The network sentry as a role program: the daemon, and the `status` and `resume` subcommands.
 * @module
 */
import { readBootClock } from "../clock.ts";
import { dropEscalatingPermissions, ExitCode, type RoleContext, type RoleProgram } from "../lifecycle.ts";
import type { RotatingFile } from "../log.ts";
import { roleInfo } from "../roles.ts";
import { readStatus } from "../status_file.ts";
import { runSteps } from "./actuator.ts";
import { DockerHost } from "./docker.ts";
import { parseDockerHost } from "./docker_address.ts";
import { dryRunJournal, fileJournal, type JournalOwner, type JournalStore } from "./journal.ts";
import { resumeSteps } from "./machine.ts";
import { probeEndpoint, readCaFile } from "./probe.ts";
import { proxyFor, regionalEndpoint } from "./endpoint.ts";
import {
  type HostFindings,
  type ProbeMemory,
  runSentry,
  SentryExitCode,
  type SentryOptions,
  statusFileFor,
} from "./sentry.ts";
import {
  type NetworkSentryConfig,
  type NetworkSentrySettings,
  networkSentrySettings,
  proxySettings,
  validateSettings,
} from "./settings.ts";

export { SentryExitCode };

const info = roleInfo("network-sentry")!;

export const networkSentryProgram: RoleProgram<NetworkSentrySettings> = {
  info,
  spec: networkSentrySettings,
  subcommands: {
    status: "print the mode, the last probe and the journal as JSON",
    resume: "manual strategy: unpause the ECS agent and finish the hand-back now",
  },
  helpExtra:
    `       ${SentryExitCode.ResumeRefused} resume refused (the sentry is offline or handing back on its own)\n` +
    `       ${SentryExitCode.DockerUnavailable} --once: Docker could not be read or a call failed while the host needed protecting\n` +
    "HTTPS_PROXY/NO_PROXY are read from the environment, else https_proxy/no_proxy.",
  validate: validateSettings,
  // `resume` changes Docker and the journal: the log file keeps its lines with the daemon's. `status` only reads.
  logFile: (config, subcommand?: string): RotatingFile | undefined =>
    subcommand === "status" ? undefined : { path: config.logFile, maxBytes: 5 * 1024 * 1024, maxFiles: 5 },
  run(context) {
    // Read while the process holds every permission (Deno's price for /proc), then give up the escalating ones.
    readBootClock();
    dropEscalatingPermissions();
    switch (context.subcommand) {
      case "status":
        return printStatus(context.config);
      case "resume":
        return resume(context);
      default:
        return daemon(context);
    }
  },
};

/** The journal of this host's sentry for this agent: one written elsewhere is refused, not acted on. */
function journalFor(config: NetworkSentryConfig): JournalStore {
  const owner: JournalOwner = { host: hostName(), agentContainer: config.agentContainer };
  return config.dryRun ? dryRunJournal(config.journalFile, owner) : fileJournal(config.journalFile, owner);
}

/**
 * The host's static name, as `hostnamectl` keeps it in /etc/hostname: the binary has read access but no
 * `--allow-sys` (and Deno refuses /proc/sys without --allow-all). `undefined` where there is none; the
 * journal is then neither stamped with a host nor checked against one.
 */
function hostName(): string | undefined {
  try {
    return Deno.readTextFileSync("/etc/hostname").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Every conversion from the settings' seconds, in one place. */
function sentryOptions(config: NetworkSentryConfig): SentryOptions {
  return {
    intervalMs: config.interval * 1000,
    probeTimeoutMs: config.timeout * 1000,
    thresholds: { failureThreshold: config.failureThreshold, recoveryThreshold: config.recoveryThreshold },
    machine: {
      strategy: config.restartStrategy,
      retries: config.retries,
      cutoverTimeoutMs: config.cutoverTimeout * 1000,
      replacementSettleMs: config.cutoverSettle * 1000,
    },
    agentContainer: config.agentContainer,
    dryRun: config.dryRun,
    once: config.once,
    metricsFile: config.metricsFile,
  };
}

async function daemon(context: RoleContext<NetworkSentrySettings>): Promise<number> {
  const { config, log, shutdown } = context;
  // validateSettings requires --region for the daemon.
  const region = config.region!;
  const endpoint = config.endpoint ?? regionalEndpoint(region);
  const { httpsProxy, noProxy } = proxySettings(config, context.env);
  const proxy = proxyFor(new URL(endpoint), httpsProxy, noProxy);
  const caCerts = config.caFile === undefined ? undefined : [await readCaFile(config.caFile)];
  log.info("[startup] probing {endpoint} every {interval} s ({via}); restart strategy {strategy}", {
    endpoint,
    interval: config.interval,
    via: proxy === undefined ? "direct" : `via proxy ${new URL(proxy).host}`,
    strategy: config.restartStrategy,
    dryRun: config.dryRun,
  });
  if (config.dryRun) log.warning("[startup] dry run: Docker and the journal are left untouched");
  const options = sentryOptions(config);
  return await runSentry({
    options,
    log,
    signal: shutdown.signal,
    region,
    endpoint,
    probe: (signal) => probeEndpoint({ endpoint, timeoutMs: options.probeTimeoutMs, caCerts, proxy }, signal),
    docker: new DockerHost(parseDockerHost(config.dockerHost), shutdown.signal),
    journal: journalFor(config),
    statusFile: config.dryRun ? undefined : statusFileFor(config.journalFile),
    resumeCommand: resumeCommand(config, region),
  });
}

/** The command logged under the manual strategy, with every flag that locates this sentry's state. */
function resumeCommand(config: NetworkSentryConfig, region: string): string {
  const defaults = networkSentrySettings;
  const flags: string[] = ["--region", region];
  if (config.journalFile !== defaults.journalFile.default) flags.push("--state-file", config.journalFile);
  if (config.dockerHost !== defaults.dockerHost.default) flags.push("--docker-host", config.dockerHost);
  if (config.agentContainer !== defaults.agentContainer.default) flags.push("--agent-container", config.agentContainer);
  return [info.binary, "resume", ...flags].map(shellWord).join(" ");
}

function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

async function printStatus(config: NetworkSentryConfig): Promise<number> {
  const journal = await fileJournal(config.journalFile).load();
  const status = await readStatus(statusFileFor(config.journalFile));
  const probes = status?.details as (ProbeMemory & Partial<HostFindings> & { endpoint?: string }) | undefined;
  const iso = (ms: number | undefined) => ms === undefined ? undefined : new Date(ms).toISOString();
  const document = {
    mode: journal.mode,
    since: iso(journal.since),
    strategy: journal.strategy,
    endpoint: probes?.endpoint,
    lastProbe: probes?.lastProbe && { ...probes.lastProbe, at: iso(probes.lastProbe.at) },
    consecutiveFailures: probes?.counters.consecutiveFailures,
    consecutiveSuccesses: probes?.counters.consecutiveSuccesses,
    probedBy: status && { pid: status.pid, updatedAt: iso(status.updatedAt) },
    leftovers: probes?.leftovers,
    awslogsBlocking: probes?.awslogsBlocking,
    journal: { path: config.journalFile, ...journal },
  };
  console.log(JSON.stringify(document, null, 2));
  return ExitCode.Ok;
}

async function resume(context: RoleContext<NetworkSentrySettings>): Promise<number> {
  const { config, log, shutdown } = context;
  const store = journalFor(config);
  const docker = new DockerHost(parseDockerHost(config.dockerHost), shutdown.signal);
  try {
    return await store.locked(async () => {
      const journal = await store.load();
      if (journal.mode === "online") {
        log.info("[resume] nothing to resume: no hand-back is waiting");
        return ExitCode.Ok;
      }
      if (journal.mode !== "awaiting-resume") {
        log.error("[resume] refused: the sentry is {mode}; it hands back on its own once the region answers", {
          mode: journal.mode,
        });
        return SentryExitCode.ResumeRefused;
      }
      const observation = await docker.observe(config.agentContainer);
      const outcome = await runSteps(resumeSteps(journal, observation), journal, {
        docker,
        journal: store,
        log,
        dryRun: config.dryRun,
        signal: shutdown.signal,
      });
      if (!outcome.finished) return ExitCode.Failure;
      if (store.unsaved) {
        // The daemon reads the journal, not this process's memory: left at awaiting-resume, it would
        // pause the agent again at its next probe.
        log.error(
          "[resume] the agent is unpaused but the journal {path} could not be written: free the disk and run resume again",
          {
            path: config.journalFile,
          },
        );
        return ExitCode.Failure;
      }
      log.info("[resume] hand-back complete, the ECS agent is in charge again");
      return ExitCode.Ok;
    }, shutdown.signal);
  } catch (error) {
    // Stopped while waiting for the lock or reading Docker: nothing was changed yet.
    if (!shutdown.signal.aborted) throw error;
    log.info("[resume] stopped on {signal} before anything was changed", { signal: String(shutdown.signal.reason) });
    return ExitCode.Ok;
  }
}
