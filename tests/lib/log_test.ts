import assert from "node:assert/strict";
import { closeLogging, rotatingFileSink, setupLogging } from "../../lib/log.ts";

Deno.test("JSON lines carry time, level, role, message and the structured fields", () => {
  const lines: string[] = [];
  const log = setupLogging({ role: "nlb-sidecar", level: "info", format: "json", write: (l) => lines.push(l) });
  log.debug("not shown at info");
  log.info("target {state}", { state: "draining", targetGroup: "tg-1", waitedSeconds: 1.5 });
  log.error("failed", { cause: new Error("boom") });
  closeLogging();
  assert.equal(lines.length, 2);
  const entry = JSON.parse(lines[0]);
  assert.equal(entry.level, "info");
  assert.equal(entry.role, "nlb-sidecar");
  assert.equal(entry.message, "target draining");
  assert.equal(entry.targetGroup, "tg-1");
  assert.equal(entry.waitedSeconds, 1.5);
  assert.ok(!Number.isNaN(Date.parse(entry.time)));
  assert.deepEqual(JSON.parse(lines[1]).cause, { name: "Error", message: "boom" });
});

Deno.test("a property named like a core field does not replace it", () => {
  const lines: string[] = [];
  const log = setupLogging({ role: "nlb-sidecar", level: "info", format: "json", write: (l) => lines.push(l) });
  log.info("the real message", { message: "a field", level: "a field too" });
  closeLogging();
  const entry = JSON.parse(lines[0]);
  assert.equal(entry.message, "the real message");
  assert.equal(entry.level, "info");
  assert.equal(entry.message_field, "a field");
  assert.equal(entry.level_field, "a field too");
});

Deno.test("text lines follow the eINS layout", () => {
  const lines: string[] = [];
  const log = setupLogging({ role: "network-sentry", level: "debug", format: "text", write: (l) => lines.push(l) });
  log.warn("[ecs-offline] ecs unreachable", { reason: "timeout" });
  closeLogging();
  assert.match(
    lines[0],
    /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING PID_\d+ \[ecs-offline\] ecs unreachable reason=timeout\n$/,
  );
});

Deno.test("the rotating file keeps the live file plus maxFiles rotated ones, each about maxBytes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/sentry.log`;
    const log = setupLogging({
      role: "network-sentry",
      level: "info",
      format: "text",
      write: () => {},
      fileSink: await rotatingFileSink({ path, maxBytes: 2_000, maxFiles: 3 }),
    });
    for (let i = 0; i < 200; i++) log.info("line {i} of a long enough message to fill files", { i });
    closeLogging();
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["sentry.log", "sentry.log.1", "sentry.log.2", "sentry.log.3"]);
    for (const name of names) assert.ok(Deno.statSync(`${dir}/${name}`).size <= 2_200, name);
    assert.match(Deno.readTextFileSync(path), /line 199 of/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
