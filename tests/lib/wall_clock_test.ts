/**
 * What the clock-step tests stand on: under libfaketime with FAKETIME_DONT_FAKE_MONOTONIC=1, a Deno
 * process's `Date.now` follows the stepped file and its monotonic clock, timers and /proc/uptime do not.
 */
import assert from "node:assert/strict";
import { fakedWallClock, libfaketimeForTests } from "../../sim/wall_clock.ts";

const library = libfaketimeForTests();

/**
 * Prints one line per request on stdin: wall ms, performance.now() ms and /proc/uptime ms; a request
 * `sleep` answers once a 500 ms timer has fired.
 */
const READER = `
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
for await (const line of lines) {
  if (line.startsWith("sleep")) await new Promise((resolve) => setTimeout(resolve, 500));
  const uptimeMs = Number.parseFloat(Deno.readTextFileSync("/proc/uptime")) * 1000;
  console.log(JSON.stringify({ wall: Date.now(), mono: performance.now(), uptimeMs }));
}`;

interface Reading {
  readonly wall: number;
  readonly mono: number;
  readonly uptimeMs: number;
}

Deno.test({
  name: "libfaketime steps a Deno process's Date.now and leaves its monotonic clock, timers and /proc/uptime alone",
  ignore: library === undefined,
  async fn() {
    await using clock = await fakedWallClock(library!, 7_200);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", READER],
      env: { ...clock.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const writer = child.stdin.getWriter();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    const ask = (request = "") => writer.write(new TextEncoder().encode(`${request}\n`));
    const read = async (request?: string): Promise<Reading> => {
      await ask(request);
      return await answer();
    };
    const answer = async (): Promise<Reading> => {
      while (!buffered.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the reader exited");
        buffered += value;
      }
      const line = buffered.slice(0, buffered.indexOf("\n"));
      buffered = buffered.slice(line.length + 1);
      return JSON.parse(line);
    };
    try {
      const first = await read();
      assert.ok(
        Math.abs(first.wall - Date.now() - 7_200_000) < 60_000,
        `started 2 h ahead: ${first.wall - Date.now()} ms`,
      );
      await clock.step(-3_600);
      const back = await read();
      const realBetween = back.mono - first.mono;
      assert.ok(
        Math.abs(back.wall - first.wall - (realBetween - 3_600_000)) < 1_000,
        `the wall clock went back by the hour: ${back.wall - first.wall} ms in ${realBetween} ms`,
      );
      assert.ok(realBetween >= 0 && realBetween < 30_000, `performance.now ran on: ${realBetween} ms`);
      assert.ok(
        Math.abs(back.uptimeMs - first.uptimeMs - realBetween) < 100,
        `/proc/uptime ran on: ${back.uptimeMs - first.uptimeMs} ms against ${realBetween} ms`,
      );
      const sleeping = read("sleep");
      await clock.step(3_600);
      const woke = await sleeping;
      assert.ok(woke.mono - back.mono >= 500, "the timer ran its 500 ms");
      assert.ok(woke.mono - back.mono < 10_000, `the timer ignored the step: ${woke.mono - back.mono} ms`);
      assert.ok(Math.abs(woke.wall - Date.now() - 7_200_000) < 60_000, "and the wall clock went forward again");
    } finally {
      await writer.close();
      await reader.cancel();
      await child.status;
    }
  },
});
