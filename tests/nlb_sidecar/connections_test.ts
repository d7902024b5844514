/**
 * Connection counting: the /proc/net/tcp parser on the kernel's format, and the real tables of this
 * machine with real loopback connections opened and closed.
 */
import assert from "node:assert/strict";
import { ConnectionTables, countEstablished } from "../../lib/nlb_sidecar/connections.ts";
import { listenLoopback } from "./support.ts";

// Captured layout of /proc/net/tcp and /proc/net/tcp6 (port 8080 = 1F90, 443 = 01BB).
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0
   1: 1701000A:1F90 0A01000A:D4C2 01 00000000:00000000 02:000A7D2A 00000000     0        0 41239 2 0000000000000000 20 4 30 10 -1
   2: 1701000A:1F90 0B01000A:D4C4 01 00000000:00000000 02:000A7D2A 00000000     0        0 41240 2 0000000000000000 20 4 30 10 -1
   3: 1701000A:1F90 0C01000A:D4C6 06 00000000:00000000 03:00000F3B 00000000     0        0 0 3 0000000000000000
   4: 1701000A:C350 020011AC:1F90 01 00000000:00000000 02:000A7D2A 00000000     0        0 41250 2 0000000000000000 20 4 30 10 -1
   5: 1701000A:01BB 0D01000A:D4C8 01 00000000:00000000 02:000A7D2A 00000000     0        0 41251 2 0000000000000000 20 4 30 10 -1
`;
const TCP6 =
  `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51234 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00001701000A:1F90 0000000000000000FFFF00000A01000A:D4CA 01 00000000:00000000 02:000A7D2A 00000000     0        0 51239 2 0000000000000000 20 4 30 10 -1
`;

Deno.test("countEstablished: ESTABLISHED sockets whose local port is a target port", () => {
  assert.equal(countEstablished(TCP, new Set([8080])), 2, "listener (0A) and TIME_WAIT (06) do not count");
  assert.equal(countEstablished(TCP, new Set([443])), 1);
  assert.equal(countEstablished(TCP, new Set([8080, 443])), 3);
  assert.equal(countEstablished(TCP, new Set([50000])), 1, "0xC350 is a local port too");
  assert.equal(countEstablished(TCP6, new Set([8080])), 1, "IPv6 rows have the same columns");
  assert.equal(countEstablished("", new Set([8080])), 0);
});

Deno.test("countEstablished: an outgoing connection to the target port is not the application's", () => {
  // Row 4: local 10.0.1.23:50000 -> remote 172.17.0.2:8080. Only the remote side is 8080.
  const outgoing = TCP.split("\n").filter((line) => line.includes("C350") || line.includes("local_address")).join("\n");
  assert.equal(countEstablished(outgoing, new Set([8080])), 0);
});

Deno.test("ConnectionTables: counts real loopback connections on this machine while they are open", async () => {
  const app = listenLoopback();
  using tables = await ConnectionTables.open();
  try {
    const ports = new Set([app.port]);
    assert.equal(await tables.countEstablished(ports), 0);
    const clients = await app.connect(3);
    assert.equal(await tables.countEstablished(ports), 3, "re-read through the same open handles");
    for (const conn of [...clients, ...app.accepted]) conn.close();
    assert.equal(await tables.countEstablished(ports), 0);
  } finally {
    await app.close();
  }
});

Deno.test("ConnectionTables: a missing table (no IPv6) is left out, other errors are raised", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tcp`, TCP);
    using tables = await ConnectionTables.open([`${dir}/tcp`, `${dir}/tcp6-missing`]);
    assert.equal(await tables.countEstablished(new Set([8080])), 2);
    await assert.rejects(ConnectionTables.open([`${dir}/tcp`, dir + "/tcp/not-a-dir"]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ConnectionTables: a table of many thousand sockets is counted across read boundaries", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const row = (i: number, state: string) =>
      `${String(i).padStart(6)}: 1701000A:1F90 0A01000A:${(0x8000 + i).toString(16).toUpperCase()} ${state} ` +
      "00000000:00000000 02:000A7D2A 00000000     0        0 41239 2 0000000000000000 20 4 30 10 -1";
    const rows = Array.from({ length: 5_000 }, (_, i) => row(i, i % 5 === 0 ? "06" : "01"));
    await Deno.writeTextFile(`${dir}/tcp`, [TCP.split("\n")[0], ...rows].join("\n") + "\n");
    assert.ok((await Deno.stat(`${dir}/tcp`)).size > 4 * 64 * 1024, "several reads");
    using tables = await ConnectionTables.open([`${dir}/tcp`]);
    assert.equal(await tables.countEstablished(new Set([8080])), 4_000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
