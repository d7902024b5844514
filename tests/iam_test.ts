/**
 * The IAM policies of examples/iam/ against the code: the AWS calls each role's binary can make, read from
 * the SDK commands its module graph imports. A policy grants nothing the code does not call, every call
 * is granted or documented as optional, and the roles documented as needing none load no AWS SDK at all.
 */
import assert from "node:assert/strict";
import { ROLES } from "../lib/roles.ts";

const root = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, root));

/** The IAM prefix of each SDK client package. */
const SERVICES: Readonly<Record<string, string>> = {
  "client-ecs": "ecs",
  "client-elastic-load-balancing-v2": "elasticloadbalancing",
  "client-ec2": "ec2",
};

/** Every module of the role's binary, by `deno info` from its entry. */
async function moduleGraph(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: root.pathname,
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return (JSON.parse(new TextDecoder().decode(out.stdout)).modules as { specifier: string }[]).map((m) => m.specifier);
}

/** `service:Action` for every SDK `...Command` the role's own modules import or re-export. */
async function awsCalls(entry: string): Promise<Set<string>> {
  const calls = new Set<string>();
  for (const specifier of await moduleGraph(entry)) {
    if (!specifier.startsWith(root.href)) continue;
    const source = await Deno.readTextFile(new URL(specifier));
    for (
      const [, names, client] of source.matchAll(
        /(?:import|export)\s*(?:type\s*)?\{([^}]*)\}\s*from\s*"@aws-sdk\/([a-z0-9-]+)"/g,
      )
    ) {
      for (const name of names.split(",").map((n) => n.trim()).filter((n) => /^[A-Z]\w*Command$/.test(n))) {
        assert.ok(SERVICES[client], `${specifier}: an SDK client this test does not know: ${client}`);
        calls.add(`${SERVICES[client]}:${name.replace(/Command$/, "")}`);
      }
    }
  }
  return calls;
}

async function policies(): Promise<Map<string, Set<string>>> {
  const found = new Map<string, Set<string>>();
  for await (const entry of Deno.readDir(new URL("examples/iam/", root))) {
    if (!entry.name.endsWith(".json")) continue;
    const policy = JSON.parse(await read(`examples/iam/${entry.name}`));
    found.set(entry.name, new Set(policy.Statement.flatMap((s: { Action: string | string[] }) => [s.Action].flat())));
  }
  return found;
}

Deno.test("the nlb-sidecar's policies grant exactly the AWS calls its code makes, optional ones documented", async () => {
  const calls = await awsCalls("cmd/nlb_sidecar.ts");
  assert.ok(calls.has("elasticloadbalancing:DescribeTargetHealth"), [...calls].join(", "));
  const granted = new Set([...(await policies()).values()].flatMap((actions) => [...actions]));
  const guide = await read("examples/iam/README.md");
  for (const action of granted) assert.ok(calls.has(action), `a policy grants ${action}, which the code never calls`);
  for (const call of calls) {
    const [service, action] = call.split(":");
    const documented = guide.includes(`\`${call}\``) || guide.includes(`\`${action}\``) && guide.includes(service);
    assert.ok(granted.has(call) || documented, `the code calls ${call}: grant it or document it as optional`);
  }
  const awsvpc = (await policies()).get("nlb-sidecar-awsvpc.json")!;
  for (const bridgeOnly of ["ecs:DescribeContainerInstances", "ec2:DescribeInstances"]) {
    assert.ok(!awsvpc.has(bridgeOnly), `awsvpc tasks never call ${bridgeOnly}`);
  }
});

for (const role of ROLES.filter((r) => r.name !== "nlb-sidecar")) {
  Deno.test(`${role.name} needs no IAM permission: its binary loads no AWS SDK and signs nothing`, async () => {
    const modules = await moduleGraph(role.entry);
    const aws = modules.filter((m) => /@aws-sdk|@smithy|\/lib\/aws\.ts$/.test(m));
    assert.deepEqual(aws, [], `${role.name} loads ${aws.join(", ")}`);
    assert.match(await read("examples/iam/README.md"), new RegExp(`^\\| ${role.name} +\\| needs none `, "m"));
  });
}
