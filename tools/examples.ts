/**
 * CloudFormation (YAML) and Terraform for the examples, generated so that there is one source of truth:
 * each `examples/<name>.taskdef.json` (the task definition as the ECS API takes it) becomes
 * `examples/cloudformation/<name>.yaml` and `examples/terraform/<name>.tf` with the same container
 * definitions, the task role's policy from `examples/iam/` where the role needs one, and the CPU
 * architecture as a parameter (the JSON's own as the default). The network sentry is a host daemon, not a
 * task: its templates are an SSM State Manager association that installs the binary and
 * `deploy/ecs-network-sentry.service` on the ECS Anywhere hosts (every external instance is an SSM
 * managed instance). `deno task docs` writes the files; its `--check` and the test suite fail when they
 * are stale.
 * @module
 */
import { stringify } from "yaml";

const root = new URL("../", import.meta.url);

/** One ECS task definition as the API takes it (examples/*.taskdef.json). */
export interface TaskDefinition {
  readonly family: string;
  readonly containerDefinitions: readonly Record<string, unknown>[];
  readonly proxyConfiguration?: {
    readonly type: string;
    readonly containerName: string;
    readonly properties: readonly { readonly name: string; readonly value: string }[];
  };
  readonly runtimePlatform?: { readonly cpuArchitecture: string; readonly operatingSystemFamily: string };
  readonly [field: string]: unknown;
}

/** Which IAM policy each example's task role gets; an example not named here needs none of its own. */
export const TASK_ROLE_POLICIES: Readonly<Record<string, string>> = {
  "nlb-sidecar-fargate": "examples/iam/nlb-sidecar-awsvpc.json",
  "nlb-sidecar-bridge": "examples/iam/nlb-sidecar-bridge.json",
};

export const SENTRY_UNIT = "deploy/ecs-network-sentry.service";
/** The placeholder the unit's ExecStart has for the region, filled in by the templates. */
export const REGION_PLACEHOLDER = "<INSERT-REGION-NAME-HERE>";

export interface GeneratedFile {
  /** Relative to the project root. */
  readonly path: string;
  readonly text: string;
}

const read = (path: string) => Deno.readTextFile(new URL(path, root));

export async function taskDefinitionExamples(): Promise<Map<string, TaskDefinition>> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(new URL("examples/", root))) {
    if (entry.isFile && entry.name.endsWith(".taskdef.json")) names.push(entry.name.replace(/\.taskdef\.json$/, ""));
  }
  const examples = new Map<string, TaskDefinition>();
  for (const name of names.sort()) examples.set(name, JSON.parse(await read(`examples/${name}.taskdef.json`)));
  return examples;
}

// ----------------------------------------------------------------------------------------- CloudFormation

/** Keys whose values are maps of the user's own names (kept as they are), not ECS properties. */
const FREE_FORM_MAPS = new Set(["options", "dockerLabels", "systemControls", "freeformTags"]);
const CFN_RENAMES: Readonly<Record<string, string>> = {
  // AWS::ECS::TaskDefinition ProxyConfiguration calls the API's `properties` this.
  "proxyConfiguration.properties": "ProxyConfigurationProperties",
};

/** The API's camelCase shape in CloudFormation's PascalCase, map-valued keys (log options) left alone. */
export function toCloudFormation(value: unknown, path = ""): unknown {
  if (Array.isArray(value)) return value.map((item) => toCloudFormation(item, path));
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, item]) => {
      const at = path ? `${path}.${key}` : key;
      const name = CFN_RENAMES[at] ?? key[0].toUpperCase() + key.slice(1);
      return [name, FREE_FORM_MAPS.has(key) ? item : toCloudFormation(item, key)];
    }),
  );
}

const ECS_TASKS_TRUST = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Principal: { Service: "ecs-tasks.amazonaws.com" }, Action: "sts:AssumeRole" }],
};

const ARCHITECTURES = ["X86_64", "ARM64"];
/** YAML 1.1 quoting, as CloudFormation reads it: `"2012-10-17"` stays a string, never a date. */
const YAML_STYLE = { lineWidth: 0, version: "1.1" } as const;

function cloudFormationTask(name: string, task: TaskDefinition, policy: unknown): string {
  const { runtimePlatform, taskRoleArn: _arn, ...rest } = task;
  const properties = {
    ...(toCloudFormation(rest) as Record<string, unknown>),
    ...(runtimePlatform && {
      RuntimePlatform: {
        CpuArchitecture: { Ref: "CpuArchitecture" },
        OperatingSystemFamily: runtimePlatform.operatingSystemFamily,
      },
    }),
    TaskRoleArn: policy ? { "Fn::GetAtt": ["TaskRole", "Arn"] } : task.taskRoleArn,
  };
  const template = {
    AWSTemplateFormatVersion: "2010-09-09",
    Description: `ecs-lifecycle example ${name}, generated from examples/${name}.taskdef.json by deno task docs`,
    Parameters: {
      CpuArchitecture: {
        Type: "String",
        Default: runtimePlatform?.cpuArchitecture ?? "X86_64",
        AllowedValues: ARCHITECTURES,
        Description: "X86_64, or ARM64 (Graviton): the images must be built for it",
      },
    },
    Resources: {
      ...(policy
        ? {
          TaskRole: {
            Type: "AWS::IAM::Role",
            Properties: {
              AssumeRolePolicyDocument: ECS_TASKS_TRUST,
              Policies: [{ PolicyName: name, PolicyDocument: policy }],
            },
          },
        }
        : {}),
      TaskDefinition: { Type: "AWS::ECS::TaskDefinition", Properties: properties },
    },
  };
  return stringify(template, YAML_STYLE);
}

// ----------------------------------------------------------------------------------------------- Terraform

// Keys with a dash are quoted: `a-b` would read as a subtraction to a person, if not to HCL.
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A Terraform (HCL) string literal: JSON's escapes, with `${` and `%{` kept literal. */
export function hclString(text: string): string {
  return JSON.stringify(text).replaceAll("${", "$${").replaceAll("%{", "%%{");
}

/** A JSON value as an HCL expression, one item a line, the `=` of an object aligned. */
export function hclValue(value: unknown, indent = ""): string {
  if (typeof value === "string") return hclString(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return String(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    if (value.every((item) => typeof item !== "object" || item === null)) {
      return `[${value.map((item) => hclValue(item)).join(", ")}]`;
    }
    return `[\n${value.map((item) => `${inner}${hclValue(item, inner)},`).join("\n")}\n${indent}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return "{}";
  const key = (name: string) => IDENTIFIER.test(name) ? name : JSON.stringify(name);
  const width = Math.max(...entries.map(([name]) => key(name).length));
  return `{\n${
    entries.map(([name, item]) => `${inner}${key(name).padEnd(width)} = ${hclValue(item, inner)}`).join("\n")
  }\n${indent}}`;
}

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const resourceName = (name: string) => name.replaceAll("-", "_");

/** `name = value` lines of one block, the `=` aligned. */
function attributes(pairs: readonly (readonly [string, string])[], indent: string): string[] {
  const width = Math.max(...pairs.map(([name]) => name.length));
  return pairs.map(([name, value]) => `${indent}${name.padEnd(width)} = ${value}`);
}

const CPU_ARCHITECTURE_VARIABLE = (defaultValue: string) => [
  `variable "cpu_architecture" {`,
  `  description = "X86_64, or ARM64 (Graviton): the images must be built for it"`,
  `  type        = string`,
  `  default     = ${hclString(defaultValue)}`,
  `  validation {`,
  `    condition     = contains(${hclValue(ARCHITECTURES)}, var.cpu_architecture)`,
  `    error_message = "cpu_architecture must be X86_64 or ARM64."`,
  `  }`,
  `}`,
];

function terraformTask(name: string, task: TaskDefinition, policy: unknown): string {
  const id = resourceName(name);
  const scalars = Object.entries(task)
    .filter(([key, value]) =>
      !["containerDefinitions", "proxyConfiguration", "runtimePlatform", "taskRoleArn"].includes(key) &&
      (typeof value !== "object" || Array.isArray(value))
    )
    .map(([key, value]) => [snake(key), hclValue(value)] as const);
  const taskRole = policy ? `aws_iam_role.${id}_task.arn` : hclString(String(task.taskRoleArn));
  const lines = [
    `# ecs-lifecycle example ${name}, generated from examples/${name}.taskdef.json by deno task docs.`,
    "",
    ...CPU_ARCHITECTURE_VARIABLE(task.runtimePlatform?.cpuArchitecture ?? "X86_64"),
    "",
  ];
  if (policy) {
    lines.push(
      `resource "aws_iam_role" "${id}_task" {`,
      ...attributes([["name_prefix", hclString(`${name.slice(0, 30)}-`)]], "  "),
      `  assume_role_policy = jsonencode(${hclValue(ECS_TASKS_TRUST, "  ")})`,
      `}`,
      "",
      `resource "aws_iam_role_policy" "${id}_task" {`,
      ...attributes([["role", `aws_iam_role.${id}_task.id`]], "  "),
      `  policy = jsonencode(${hclValue(policy, "  ")})`,
      `}`,
      "",
    );
  }
  lines.push(
    `resource "aws_ecs_task_definition" "${id}" {`,
    ...attributes([...scalars, ["task_role_arn", taskRole]], "  "),
  );
  if (task.runtimePlatform) {
    lines.push(
      "",
      "  runtime_platform {",
      ...attributes([
        ["cpu_architecture", "var.cpu_architecture"],
        ["operating_system_family", hclString(task.runtimePlatform.operatingSystemFamily)],
      ], "    "),
      "  }",
    );
  }
  if (task.proxyConfiguration) {
    const proxy = task.proxyConfiguration;
    const properties = Object.fromEntries(proxy.properties.map((p) => [p.name, p.value]));
    lines.push(
      "",
      "  proxy_configuration {",
      ...attributes([
        ["type", hclString(proxy.type)],
        ["container_name", hclString(proxy.containerName)],
        ["properties", hclValue(properties, "    ")],
      ], "    "),
      "  }",
    );
  }
  lines.push("", `  container_definitions = jsonencode(${hclValue(task.containerDefinitions, "  ")})`, "}", "");
  return lines.join("\n");
}

// ----------------------------------------------------------------------------------------- network sentry

/**
 * The shell commands an SSM association runs on each host: the binary for the host's architecture from
 * `dist/<target>/` as `make compile` lays it out (uploaded to a bucket or web server), and the unit.
 */
export function sentryInstallScript(unit: string, binaryBaseUrl: string, region: string): string {
  return [
    "set -eu",
    `curl -fsSL -o /usr/local/bin/ecs-network-sentry.new "${binaryBaseUrl}/$(uname -m)-unknown-linux-gnu/ecs-network-sentry"`,
    "chmod 0755 /usr/local/bin/ecs-network-sentry.new",
    "mv /usr/local/bin/ecs-network-sentry.new /usr/local/bin/ecs-network-sentry",
    "cat > /etc/systemd/system/ecs-network-sentry.service <<'UNIT'",
    unit.replace(REGION_PLACEHOLDER, region).trimEnd(),
    "UNIT",
    "systemctl daemon-reload",
    "systemctl enable ecs-network-sentry",
    "systemctl restart ecs-network-sentry",
    "",
  ].join("\n");
}

const SENTRY_HEADER = "ecs-lifecycle network sentry on ECS Anywhere hosts, generated from " +
  `${SENTRY_UNIT} by deno task docs`;

function cloudFormationSentry(unit: string): string {
  return stringify({
    AWSTemplateFormatVersion: "2010-09-09",
    Description: SENTRY_HEADER,
    Parameters: {
      BinaryBaseUrl: {
        Type: "String",
        Description: "Where dist/ of make compile is served: <url>/<arch>-unknown-linux-gnu/ecs-network-sentry",
      },
      TargetTagKey: { Type: "String", Default: "ecs-network-sentry" },
      TargetTagValue: { Type: "String", Default: "enabled" },
    },
    Resources: {
      NetworkSentry: {
        Type: "AWS::SSM::Association",
        Properties: {
          AssociationName: "ecs-network-sentry",
          Name: "AWS-RunShellScript",
          Targets: [{ Key: { "Fn::Sub": "tag:${TargetTagKey}" }, Values: [{ Ref: "TargetTagValue" }] }],
          Parameters: {
            commands: [{ "Fn::Sub": sentryInstallScript(unit, "${BinaryBaseUrl}", "${AWS::Region}") }],
          },
        },
      },
    },
  }, YAML_STYLE);
}

function terraformSentry(unit: string): string {
  // The script goes in as a heredoc: HCL interpolates ${...} there, so the unit's own text is escaped.
  const script = sentryInstallScript(
    unit.replaceAll("${", "$${").replaceAll("%{", "%%{"),
    "${var.binary_base_url}",
    "${data.aws_region.current.name}",
  );
  return [
    `# ${SENTRY_HEADER}.`,
    "",
    `variable "binary_base_url" {`,
    `  description = "Where dist/ of make compile is served: <url>/<arch>-unknown-linux-gnu/ecs-network-sentry"`,
    `  type        = string`,
    `}`,
    "",
    `variable "target_tag" {`,
    `  description = "The tag of the ECS Anywhere managed instances that get the sentry"`,
    `  type        = object({ key = string, value = string })`,
    `  default     = { key = "ecs-network-sentry", value = "enabled" }`,
    `}`,
    "",
    `data "aws_region" "current" {}`,
    "",
    `resource "aws_ssm_association" "ecs_network_sentry" {`,
    `  association_name = "ecs-network-sentry"`,
    `  name             = "AWS-RunShellScript"`,
    "",
    `  targets {`,
    `    key    = "tag:\${var.target_tag.key}"`,
    `    values = [var.target_tag.value]`,
    `  }`,
    "",
    `  parameters = {`,
    `    commands = <<-SCRIPT`,
    ...script.trimEnd().split("\n").map((line) => line ? `      ${line}` : ""),
    `    SCRIPT`,
    `  }`,
    `}`,
    "",
  ].join("\n");
}

/** Every generated example file, from the task definitions, the IAM policies and the unit. */
export async function exampleFiles(): Promise<GeneratedFile[]> {
  const files: GeneratedFile[] = [];
  for (const [name, task] of await taskDefinitionExamples()) {
    const policyFile = TASK_ROLE_POLICIES[name];
    const policy = policyFile ? JSON.parse(await read(policyFile)) : undefined;
    files.push(
      { path: `examples/cloudformation/${name}.yaml`, text: cloudFormationTask(name, task, policy) },
      { path: `examples/terraform/${name}.tf`, text: terraformTask(name, task, policy) },
    );
  }
  const unit = await read(SENTRY_UNIT);
  files.push(
    { path: "examples/cloudformation/network-sentry-ssm.yaml", text: cloudFormationSentry(unit) },
    { path: "examples/terraform/network-sentry-ssm.tf", text: terraformSentry(unit) },
  );
  return files;
}

/** The generated files whose committed text differs from what the sources give. */
export async function staleExamples(): Promise<string[]> {
  const stale: string[] = [];
  for (const file of await exampleFiles()) {
    const current = await read(file.path).catch(() => undefined);
    if (current !== file.text) stale.push(file.path);
  }
  return stale;
}

export async function writeExamples(): Promise<void> {
  for (const file of await exampleFiles()) {
    const url = new URL(file.path, root);
    await Deno.mkdir(new URL(".", url), { recursive: true });
    await Deno.writeTextFile(url, file.text);
  }
}
