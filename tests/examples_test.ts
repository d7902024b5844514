/**
 * The CloudFormation and Terraform examples are generated from examples/*.taskdef.json, the IAM policies
 * and the sentry's unit, and carry exactly what those say: the same container definitions, the same task
 * settings, the same policies. Read back with a real YAML parser, and with a strict reader of the HCL the
 * generator writes.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import {
  REGION_PLACEHOLDER,
  SENTRY_UNIT,
  staleExamples,
  TASK_ROLE_POLICIES,
  taskDefinitionExamples,
} from "../tools/examples.ts";

const root = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, root));
const examples = await taskDefinitionExamples();

Deno.test("the CloudFormation and Terraform examples are generated from the task definitions and up to date", async () => {
  assert.deepEqual(await staleExamples(), [], "stale generated examples: run deno task docs");
  assert.ok(examples.size >= 3, "the Fargate, bridge and Envoy task definitions");
});

/** CloudFormation's PascalCase back to the API's camelCase; the maps of the user's own keys stay. */
function fromCloudFormation(value: unknown, key = ""): unknown {
  if (Array.isArray(value)) return value.map((item) => fromCloudFormation(item, key));
  if (value === null || typeof value !== "object" || key === "Options") return value;
  return Object.fromEntries(
    Object.entries(value).map(([name, item]) => [
      name === "ProxyConfigurationProperties" ? "properties" : name[0].toLowerCase() + name.slice(1),
      fromCloudFormation(item, name),
    ]),
  );
}

for (const [name, task] of examples) {
  Deno.test(`${name}: the CloudFormation template carries the task definition and its task role's policy`, async () => {
    const template = parse(await read(`examples/cloudformation/${name}.yaml`));
    const properties = fromCloudFormation(template.Resources.TaskDefinition.Properties) as Record<string, unknown>;
    const { runtimePlatform, taskRoleArn, ...rest } = properties;
    const { runtimePlatform: wantPlatform, taskRoleArn: wantRole, ...want } = task;
    assert.deepEqual(rest, want);
    assert.deepEqual(properties.containerDefinitions, task.containerDefinitions, "the same container definitions");
    assert.deepEqual(runtimePlatform, { cpuArchitecture: { ref: "CpuArchitecture" }, ...omitArch(wantPlatform) });
    assert.equal(template.Parameters.CpuArchitecture.Default, wantPlatform?.cpuArchitecture);
    const policy = TASK_ROLE_POLICIES[name];
    if (policy) {
      assert.deepEqual(taskRoleArn, { "fn::GetAtt": ["TaskRole", "Arn"] });
      const role = template.Resources.TaskRole.Properties;
      assert.deepEqual(role.Policies[0].PolicyDocument, JSON.parse(await read(policy)));
      assert.equal(role.AssumeRolePolicyDocument.Statement[0].Principal.Service, "ecs-tasks.amazonaws.com");
    } else {
      assert.equal(taskRoleArn, wantRole);
    }
  });

  Deno.test(`${name}: the Terraform file carries the task definition and its task role's policy`, async () => {
    const tf = await read(`examples/terraform/${name}.tf`);
    const resource = block(tf, `resource "aws_ecs_task_definition"`);
    assert.deepEqual(hcl(jsonencodeArgument(resource, "container_definitions")), task.containerDefinitions);
    for (const [key, value] of Object.entries(task)) {
      if (typeof value === "object" && !Array.isArray(value)) continue;
      if (key === "containerDefinitions" || key === "taskRoleArn") continue;
      const attribute = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      assert.deepEqual(hcl(attributeValue(resource, attribute)), value, `${name}: ${attribute}`);
    }
    if (task.runtimePlatform) {
      assert.match(resource, /cpu_architecture\s+= var\.cpu_architecture/);
      assert.match(tf, new RegExp(`default\\s+= "${task.runtimePlatform.cpuArchitecture}"`));
    }
    if (task.proxyConfiguration) {
      const properties = hcl(attributeValue(block(resource, "proxy_configuration"), "properties"));
      assert.deepEqual(
        properties,
        Object.fromEntries(task.proxyConfiguration.properties.map((p) => [p.name, p.value])),
      );
    }
    const policy = TASK_ROLE_POLICIES[name];
    if (policy) {
      assert.match(resource, /task_role_arn\s+= aws_iam_role\.\w+\.arn/);
      const rolePolicy = block(tf, `resource "aws_iam_role_policy"`);
      assert.deepEqual(hcl(jsonencodeArgument(rolePolicy, "policy")), JSON.parse(await read(policy)));
    } else {
      assert.deepEqual(hcl(attributeValue(resource, "task_role_arn")), task.taskRoleArn);
    }
  });
}

const omitArch = (platform: { cpuArchitecture: string; operatingSystemFamily: string } | undefined) =>
  platform && { operatingSystemFamily: platform.operatingSystemFamily };

Deno.test("the sentry's SSM association installs the unit of deploy/ with the region filled in", async () => {
  const unit = (await read(SENTRY_UNIT)).trimEnd();
  assert.ok(unit.includes(REGION_PLACEHOLDER));
  const cfn = parse(await read("examples/cloudformation/network-sentry-ssm.yaml"));
  const association = cfn.Resources.NetworkSentry.Properties;
  assert.equal(association.Name, "AWS-RunShellScript");
  const script: string = association.Parameters.commands[0]["Fn::Sub"];
  assert.ok(script.includes(unit.replace(REGION_PLACEHOLDER, "${AWS::Region}")), "CloudFormation: the unit");
  const tf = await read("examples/terraform/network-sentry-ssm.tf");
  const heredoc = tf.match(/<<-SCRIPT\n([\s\S]*?)\n\s*SCRIPT\n/)![1].split("\n").map((l) => l.replace(/^ {6}/, ""));
  assert.ok(
    heredoc.join("\n").includes(unit.replace(REGION_PLACEHOLDER, "${data.aws_region.current.name}")),
    "Terraform: the unit",
  );
  for (const text of [script, heredoc.join("\n")]) {
    assert.match(text, /\/\$\(uname -m\)-unknown-linux-gnu\/ecs-network-sentry"/, "the binary of the host's arch");
    assert.match(text, /systemctl daemon-reload\nsystemctl enable ecs-network-sentry\nsystemctl restart/);
  }
});

// --------------------------------------------------------------------- reading the generated Terraform

/** The text of the first block that starts with `header`, up to its closing brace. */
function block(text: string, header: string): string {
  const start = text.indexOf(header);
  assert.ok(start >= 0, `no ${header} block`);
  const open = text.indexOf("{", start);
  return text.slice(open, matchingClose(text, open) + 1);
}

/** The index of the bracket that closes the one at `open`, strings skipped. */
function matchingClose(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; text[i] !== '"'; i++) if (text[i] === "\\") i++;
    } else if ("{[(".includes(c)) depth++;
    else if ("}])".includes(c) && --depth === 0) return i;
  }
  throw new Error("unbalanced brackets");
}

/** The expression after `name =`: to the end of its line, or to the bracket that closes the one it opens. */
function attributeValue(body: string, name: string): string {
  const match = new RegExp(`^\\s*${name}\\s+= `, "m").exec(body);
  assert.ok(match, `no attribute ${name}`);
  const start = match.index + match[0].length;
  const open = body.slice(start).search(/^(\w+\()?[{[(]/) === 0 ? body.slice(start).search(/[{[(]/) + start : -1;
  return open >= 0 ? body.slice(start, matchingClose(body, open) + 1) : body.slice(start, body.indexOf("\n", start));
}

function jsonencodeArgument(body: string, name: string): string {
  const value = attributeValue(body, name);
  assert.ok(value.startsWith("jsonencode("), `${name} = jsonencode(...)`);
  const open = value.indexOf("(");
  return value.slice(open + 1, matchingClose(value, open));
}

/** A strict reader of HCL literals: objects, tuples, strings, numbers, booleans and null; nothing else. */
function hcl(text: string): unknown {
  const tokens = text.match(/"(?:[^"\\]|\\.)*"|[{}[\],=]|[A-Za-z_][A-Za-z0-9_]*|-?\d+(?:\.\d+)?|\S/g) ?? [];
  let at = 0;
  const next = () => tokens[at++];
  const expect = (token: string) => assert.equal(next(), token);
  const string = (token: string) => JSON.parse(token.replaceAll("$${", "${").replaceAll("%%{", "%{"));
  function value(): unknown {
    const token = next();
    if (token === "{") {
      const object: Record<string, unknown> = {};
      while (tokens[at] !== "}") {
        const key = next();
        object[key.startsWith('"') ? string(key) : key] = (expect("="), value());
        if (tokens[at] === ",") at++;
      }
      at++;
      return object;
    }
    if (token === "[") {
      const items: unknown[] = [];
      while (tokens[at] !== "]") {
        items.push(value());
        if (tokens[at] === ",") at++;
      }
      at++;
      return items;
    }
    if (token.startsWith('"')) return string(token);
    if (/^-?\d/.test(token)) return Number(token);
    if (token === "true" || token === "false") return token === "true";
    if (token === "null") return null;
    throw new Error(`not a literal: ${token}`);
  }
  const result = value();
  assert.equal(at, tokens.length, `trailing tokens: ${tokens.slice(at).join(" ")}`);
  return result;
}
