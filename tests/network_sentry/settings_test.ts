import assert from "node:assert/strict";
import { sleep } from "../../lib/clock.ts";
import { ConfigError, parseSettings } from "../../lib/config.ts";
import { renderMetrics } from "../../lib/network_sentry/metrics.ts";
import { networkSentrySettings, proxySettings, validateSettings } from "../../lib/network_sentry/settings.ts";
import { fileJournal, JournalError } from "../../lib/network_sentry/journal.ts";
import { ONLINE } from "../../lib/network_sentry/machine.ts";
import { resumedCounters, statusFileFor } from "../../lib/network_sentry/sentry.ts";
import { runRoleToEnd, spawnRole } from "../../sim/role_process.ts";

function parse(args: string[], env: Record<string, string> = {}, subcommand?: string) {
  const { config } = parseSettings(networkSentrySettings, { args, env });
  const [first] = validateSettings(config, env, subcommand);
  if (first) throw first;
  return config;
}

Deno.test("drop-in: the eINS flags keep their short forms and defaults", () => {
  const config = parse(["-r", "ap-southeast-2"]);
  assert.equal(config.region, "ap-southeast-2");
  assert.equal(config.interval, 20);
  assert.equal(config.retries, 0);
  assert.equal(config.logFile, "/tmp/ecs-external-instance-network-sentry.log");
  assert.equal(config.logLevel, "info");
  assert.equal(config.failureThreshold, 2);
  assert.equal(config.recoveryThreshold, 2);
  assert.equal(config.restartStrategy, "cleanup");
  assert.equal(config.timeout, 5);
  assert.equal(config.cutoverTimeout, 300);
  assert.equal(config.cutoverSettle, 10);
  assert.equal(config.dockerHost, "unix:///var/run/docker.sock");
  assert.equal(config.agentContainer, "ecs-agent");
  assert.equal(config.journalFile, "/var/lib/ecs-network-sentry/state.json");
  const short = parse(["-r", "eu-west-1", "-i", "15", "-n", "5", "-l", "/mypath/myfile.log", "-k", "DEBUG"]);
  assert.deepEqual([short.interval, short.retries, short.logFile, short.logLevel], [
    15,
    5,
    "/mypath/myfile.log",
    "debug",
  ]);
  assert.equal(parse(["-r", "eu-west-1", "-k", "logging.WARNING"]).logLevel, "warning");
  assert.equal(parse(["-r", "eu-west-1", "--loglevel", "CRITICAL"]).logLevel, "error");
  assert.equal(parse(["-r", "eu-west-1", "-k", "NOTSET"]).logLevel, "debug", "Python's NOTSET logs everything");
  assert.equal(parse(["-r", "eu-west-1", "-k", "logging.NOTSET"]).logLevel, "debug");
});

Deno.test("status and resume need no --region; the daemon does", () => {
  for (const subcommand of ["status", "resume"]) assert.equal(parse([], {}, subcommand).region, undefined);
  assert.throws(() => parse([], {}), /--region: is required/);
  assert.throws(() => parse(["-r", "Europe"], {}, "status"), /--region="Europe"/, "a region given is still checked");
});

Deno.test("lower-case https_proxy and no_proxy are read too; the upper-case spelling wins", () => {
  const lower = parse(["-r", "eu-west-1"], { https_proxy: "http://lower:3128", no_proxy: ".lower" });
  assert.deepEqual(proxySettings(lower, { https_proxy: "http://lower:3128", no_proxy: ".lower" }), {
    httpsProxy: "http://lower:3128",
    noProxy: ".lower",
  });
  const env = { HTTPS_PROXY: "http://upper:3128", https_proxy: "http://lower:3128", NO_PROXY: ".upper" };
  assert.deepEqual(proxySettings(parse(["-r", "eu-west-1"], env), env), {
    httpsProxy: "http://upper:3128",
    noProxy: ".upper",
  });
  assert.deepEqual(proxySettings(parse(["-r", "eu-west-1"]), {}), { httpsProxy: undefined, noProxy: undefined });
  assert.throws(
    () => parse(["-r", "eu-west-1"], { https_proxy: "https://proxy:3128" }),
    /https_proxy="https:\/\/proxy:3128": only http:\/\/ proxies/,
  );
  assert.throws(
    () => parse(["-r", "eu-west-1"], { https_proxy: "socks5://proxy:1080" }),
    /https_proxy="socks5:\/\/proxy:1080": expected an absolute/,
  );
});

Deno.test("a proxy without a scheme is an http:// proxy, as curl takes it", () => {
  assert.equal(parse(["-r", "eu-west-1"], { HTTPS_PROXY: "proxy.corp:3128" }).httpsProxy, "http://proxy.corp:3128");
  assert.equal(parse(["-r", "eu-west-1", "--https-proxy", "10.0.0.1:3128"]).httpsProxy, "http://10.0.0.1:3128");
  const env = { https_proxy: "user:pw@proxy:3128" };
  assert.equal(proxySettings(parse(["-r", "eu-west-1"], env), env).httpsProxy, "http://user:pw@proxy:3128");
});

Deno.test("proxy and Docker host come from the environment unless a flag says otherwise", () => {
  const env = { HTTPS_PROXY: "http://user:pw@proxy:3128/", NO_PROXY: ".internal", DOCKER_HOST: "tcp://127.0.0.1:2375" };
  const config = parse(["-r", "eu-west-1"], env);
  assert.equal(config.httpsProxy, "http://user:pw@proxy:3128");
  assert.equal(config.noProxy, ".internal");
  assert.equal(config.dockerHost, "tcp://127.0.0.1:2375");
  assert.equal(parse(["-r", "eu-west-1", "--docker-host", "unix:///run/d.sock"], env).dockerHost, "unix:///run/d.sock");
});

Deno.test("bad settings name the flag", () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /--region: is required/],
    [["-r", "Europe"], /--region="Europe": expected an AWS region name/],
    [["-r", "eu-west-1", "-i", "0"], /--interval="0": expected more than 0 seconds/],
    [["-r", "eu-west-1", "--timeout", "soon"], /--timeout="soon"/],
    [["-r", "eu-west-1", "--failure-threshold", "0"], /--failure-threshold="0": expected a whole number from 1/],
    [
      ["-r", "eu-west-1", "--restart-strategy", "yolo"],
      /--restart-strategy="yolo": expected one of cleanup, preserve, manual, cutover/,
    ],
    [["-r", "eu-west-1", "--endpoint", "http://ecs.eu-west-1.amazonaws.com"], /--endpoint=.*must be an https:\/\/ URL/],
    [["-r", "eu-west-1", "--https-proxy", "https://proxy:3128"], /--https-proxy=.*only http:\/\/ proxies/],
    [["-r", "eu-west-1", "--docker-host", "ssh://host"], /--docker-host="ssh:\/\/host": expected unix/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => parse(args),
      (error) => error instanceof ConfigError && message.test(error.message),
      args.join(" "),
    );
  }
});

Deno.test("process: bad flags exit 2 before doing anything, with one line naming the flag", async () => {
  for (
    const [args, message] of [
      [["--interval", "5"], /--region: is required/],
      [["-r", "eu-west-1", "--restart-strategy", "yolo"], /--restart-strategy/],
      [["-r", "eu-west-1", "--bogus"], /--bogus: unknown flag/],
      [["-r", "eu-west-1", "frobnicate"], /frobnicate: unknown subcommand/],
    ] as Array<[string[], RegExp]>
  ) {
    const result = await runRoleToEnd("network-sentry", { args });
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.equal(result.stdout, "");
  }
});

Deno.test("process: status runs without --region and writes nothing; resume writes what it did to the rotating log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sentry-subcommands-" });
  try {
    const status = await runRoleToEnd("network-sentry", {
      args: ["status", "--state-file", `${dir}/state.json`, "--logfile", `${dir}/status.log`],
    });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /"mode": "online"/);
    const resume = await runRoleToEnd("network-sentry", {
      args: ["resume", "--state-file", `${dir}/state.json`, "--logfile", `${dir}/sentry.log`, "--dry-run"],
    });
    assert.equal(resume.code, 0, resume.stderr);
    assert.ok((await Deno.readTextFile(`${dir}/sentry.log`)).trim().length > 0, "resume logged to the file");
    await assert.rejects(Deno.stat(`${dir}/status.log`), "status only reads: it keeps no log file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process: --help lists every flag and the extra exit code", async () => {
  const result = await runRoleToEnd("network-sentry", { args: ["--help"] });
  assert.equal(result.code, 0);
  for (
    const flag of [
      "-r, --region",
      "-i, --interval",
      "-n, --retries",
      "-l, --logfile",
      "-k, --loglevel",
      "--restart-strategy",
    ]
  ) {
    assert.ok(result.stdout.includes(flag), flag);
  }
  assert.match(result.stdout, /3 resume refused/);
});

Deno.test("metrics: Prometheus text with every family and a one-hot mode", () => {
  const text = renderMetrics({
    mode: "offline",
    consecutiveFailures: 4,
    lastProbe: { reachable: false, latencyMs: 5001.4, at: 1_700_000_000_000 },
    transitions: { offline: 1, online: 0 },
    containersKeptAlive: 3,
    dockerErrors: 2,
    leftoverContainers: 2,
    leftoverAgentPaused: true,
    awslogsBlocking: 1,
  });
  assert.match(text, /^# TYPE ecs_network_sentry_mode gauge$/m);
  assert.match(text, /^ecs_network_sentry_mode\{mode="offline"\} 1$/m);
  assert.match(text, /^ecs_network_sentry_mode\{mode="online"\} 0$/m);
  assert.match(text, /^ecs_network_sentry_consecutive_probe_failures 4$/m);
  assert.match(text, /^ecs_network_sentry_last_probe_success 0$/m);
  assert.match(text, /^ecs_network_sentry_last_probe_latency_seconds 5\.001$/m);
  assert.match(text, /^ecs_network_sentry_transitions_total\{to="offline"\} 1$/m);
  assert.match(text, /^ecs_network_sentry_containers_kept_alive 3$/m);
  assert.match(text, /^# TYPE ecs_network_sentry_docker_errors_total counter$/m);
  assert.match(text, /^ecs_network_sentry_docker_errors_total 2$/m);
  assert.match(text, /^ecs_network_sentry_leftover_containers 2$/m);
  assert.match(text, /^ecs_network_sentry_leftover_agent_paused 1$/m);
  assert.match(text, /^ecs_network_sentry_awslogs_blocking_containers 1$/m);
  for (const line of text.trimEnd().split("\n")) {
    assert.match(line, /^(# (HELP|TYPE) \w+ .+|\w+(\{\w+="[\w-]+"\})? -?[\d.]+)$/, line);
  }
});

Deno.test("journal: missing means online, saved atomically, garbage is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = fileJournal(`${dir}/sub/state.json`);
    assert.deepEqual(await store.load(), ONLINE);
    const offline = { ...ONLINE, mode: "offline" as const, since: 1 };
    await store.locked(() => store.save(offline));
    assert.deepEqual(await store.load(), offline);
    assert.equal((await Deno.stat(`${dir}/sub/state.json`)).mode! & 0o777, 0o600);
    await Deno.writeTextFile(`${dir}/sub/state.json`, '{"mode":"sideways"}');
    await assert.rejects(store.load(), JournalError);
    await Deno.writeTextFile(`${dir}/sub/state.json`, "{trunc");
    await assert.rejects(store.load(), JournalError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("journal: waiting for a lock another holds ends at once on shutdown", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/state.json`;
    let release = () => {};
    let held = () => {};
    const holding = new Promise<void>((resolve) => (held = resolve));
    const holder = fileJournal(path).locked(() => {
      held();
      return new Promise<void>((resolve) => (release = resolve));
    });
    await holding;
    const shutdown = new AbortController();
    setTimeout(() => shutdown.abort("SIGTERM"), 200);
    const started = performance.now();
    const waiting = fileJournal(path).locked(() => Promise.resolve("ran"), shutdown.signal);
    const outcome = await Promise.race([
      waiting.catch((reason) => `stopped by ${reason}`),
      sleep(3000).then(() => "still waiting 3 s on"),
    ]);
    assert.equal(outcome, "stopped by SIGTERM");
    assert.ok(performance.now() - started < 1000, "the wait ended with the shutdown");
    release();
    await holder;
    assert.equal(await fileJournal(path).locked(() => Promise.resolve("free")), "free");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process: SIGTERM while another process holds the journal lock exits 0 at once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    using lock = await Deno.open(`${dir}/state.json.lock`, { write: true, create: true });
    await lock.lock(true);
    await using sentry = spawnRole("network-sentry", {
      args: [
        "--region=eu-test-1",
        "--endpoint=https://127.0.0.1:9",
        "--interval=0.2",
        `--state-file=${dir}/state.json`,
        `--logfile=${dir}/sentry.log`,
        `--docker-host=unix://${dir}/no-docker.sock`,
      ],
    });
    await sentry.waitForLog((e) => e.message.startsWith("[connect] ecs at eu-test-1 unreachable"));
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    sentry.kill("SIGTERM");
    const exit = await Promise.race([sentry.exited, sleep(5000).then(() => undefined)]);
    assert.ok(exit, "still running 5 s after SIGTERM");
    assert.equal(exit.code, 0);
    assert.ok(exit.at - signalled < 2000, `exited ${exit.at - signalled} ms after SIGTERM`);
    assert.ok(sentry.logs.some((e) => e.message.startsWith("[shutdown] stopping on SIGTERM")));
    assert.equal(
      sentry.logs.filter((e) => e.message.startsWith("[begin]")).length,
      1,
      "the first round was still waiting for the lock",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("probe streaks survive a restart only while the boot clock says they are recent", () => {
  const boot = "0b9a6c52-6f0e-4f3a-8d2b-1c7e5a4d3f20";
  const counters = { consecutiveFailures: 1, consecutiveSuccesses: 0 };
  const saved = { updatedAt: 1_000, details: { counters, bootClock: { bootId: boot, ms: 500_000 } } };
  const none = { consecutiveFailures: 0, consecutiveSuccesses: 0 };
  const now = (wallMs: number, bootMs: number, bootId = boot) => ({ wallMs, bootClock: { bootId, ms: bootMs } });
  assert.deepEqual(resumedCounters(saved, 25_000, now(30_000, 529_000)), counters);
  assert.deepEqual(resumedCounters(saved, 25_000, now(60_000, 560_000)), none, "older than two periods");
  // The wall clock stepped an hour either way; the boot clock tells how long it really was.
  assert.deepEqual(resumedCounters(saved, 25_000, now(3_601_000, 510_000)), counters, "an hour's step forward");
  assert.deepEqual(resumedCounters(saved, 25_000, now(1_000, 900_000)), none, "old although the wall clock says now");
  assert.deepEqual(resumedCounters(saved, 25_000, now(2_000, 10_000, "another boot")), none, "before a reboot");
  const unstamped = { updatedAt: 1_000, details: { counters } };
  assert.deepEqual(resumedCounters(unstamped, 25_000, now(2_000, 10_000)), none, "an age only the wall clock tells");
  assert.deepEqual(resumedCounters(undefined, 25_000, now(0, 0)), none);
  assert.equal(
    statusFileFor("/var/lib/ecs-network-sentry/state.json"),
    "/var/lib/ecs-network-sentry/state.status.json",
  );
});

Deno.test("process: --once exits 4 when Docker cannot be reached to protect the host, so a timer unit reports it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const result = await runRoleToEnd("network-sentry", {
      args: [
        "--once",
        "--failure-threshold=1",
        "--region=eu-test-1",
        "--endpoint=https://127.0.0.1:9",
        `--state-file=${dir}/state.json`,
        `--logfile=${dir}/sentry.log`,
        `--docker-host=unix://${dir}/no-docker.sock`,
      ],
    });
    assert.equal(result.code, 4, result.stdout + result.stderr);
    assert.match(result.stdout, /\[docker\] cannot read containers/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
