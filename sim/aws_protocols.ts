/**
 * Wire framing of the three AWS protocols the roles' SDK clients speak, so an emulator only writes its
 * operations: AWS JSON 1.1 (ECS), the AWS query protocol (ELBv2) and the EC2 query protocol. Errors,
 * throttling and request ids take the real services' shapes, and calls without a SigV4 signature are
 * refused as AWS refuses them.
 * @module
 */
import type { FaultRenderer, SimHandler, SimRequest, SimResponse } from "./http_server.ts";

/** Throw from an operation to answer with an AWS error. */
export class AwsError extends Error {
  constructor(readonly code: string, message: string, readonly status = 400) {
    super(message);
    this.name = "AwsError";
  }
}

export interface CallRecord {
  readonly operation: string;
  /** When it arrived, on this process's monotonic clock (`performance.now()`): a step of the wall clock moves no gap. */
  readonly at: number;
}

/** Which operations were called, in order: how tests and benchmarks count API cost. */
export class CallLog {
  readonly records: CallRecord[] = [];

  add(operation: string): void {
    this.records.push({ operation, at: performance.now() });
  }

  count(operation?: string): number {
    return operation === undefined ? this.records.length : this.records.filter((r) => r.operation === operation).length;
  }

  clear(): void {
    this.records.length = 0;
  }
}

export interface AwsEmulatorFraming {
  readonly handle: SimHandler;
  readonly renderFaults: FaultRenderer;
  readonly calls: CallLog;
}

const requestId = () => crypto.randomUUID();

function unsigned(request: SimRequest): boolean {
  return !(request.headers["authorization"] ?? "").startsWith("AWS4-HMAC-SHA256 ");
}

// ---------------------------------------------------------------- the services the roles call

/** Amazon ECS: AWS JSON 1.1. */
export const ECS_PROTOCOL = {
  targetPrefix: "AmazonEC2ContainerServiceV20141113",
  throttleCode: "ThrottlingException",
} as const;

/** Elastic Load Balancing v2: the AWS query protocol. */
export const ELBV2_PROTOCOL = {
  flavor: "query",
  version: "2015-12-01",
  xmlns: "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
  throttleCode: "Throttling",
} as const;

/** Amazon EC2: the EC2 query protocol. */
export const EC2_PROTOCOL = {
  flavor: "ec2",
  version: "2016-11-15",
  xmlns: "http://ec2.amazonaws.com/doc/2016-11-15/",
  throttleCode: "RequestLimitExceeded",
} as const;

// ---------------------------------------------------------------- AWS JSON 1.1

export type JsonOperation = (input: Record<string, unknown>) => unknown | Promise<unknown>;

export interface JsonServiceOptions {
  /** `X-Amz-Target` prefix, e.g. `AmazonEC2ContainerServiceV20141113`. */
  readonly targetPrefix: string;
  readonly operations: Readonly<Record<string, JsonOperation>>;
  /** The service's throttling error code, e.g. `ThrottlingException`. */
  readonly throttleCode: string;
}

function jsonError(code: string, message: string, status: number): SimResponse {
  return {
    status,
    headers: {
      "content-type": "application/x-amz-json-1.1",
      "x-amzn-requestid": requestId(),
      "x-amzn-errortype": code,
    },
    body: JSON.stringify({ __type: code, message }),
  };
}

export function awsJsonService(options: JsonServiceOptions): AwsEmulatorFraming {
  const calls = new CallLog();
  const operationOf = (request: SimRequest) => (request.headers["x-amz-target"] ?? "").split(".").pop() ?? "";
  return {
    calls,
    renderFaults: {
      throttled: (request) => {
        calls.add(operationOf(request));
        return jsonError(options.throttleCode, "Rate exceeded", 400);
      },
      serverError: (request) => {
        calls.add(operationOf(request));
        return jsonError("ServerException", "Service unavailable, please retry", 500);
      },
    },
    handle: async (request) => {
      const target = request.headers["x-amz-target"] ?? "";
      const [prefix, operation] = target.split(".");
      calls.add(operation ?? "");
      if (request.method !== "POST" || prefix !== options.targetPrefix || !(operation in options.operations)) {
        return jsonError("UnknownOperationException", `unknown operation ${target}`, 400);
      }
      if (unsigned(request)) {
        return jsonError("MissingAuthenticationTokenException", "Missing Authentication Token", 400);
      }
      try {
        const input = request.body ? JSON.parse(request.body) as Record<string, unknown> : {};
        const output = await options.operations[operation](input);
        return {
          status: 200,
          headers: { "content-type": "application/x-amz-json-1.1", "x-amzn-requestid": requestId() },
          body: JSON.stringify(output ?? {}),
        };
      } catch (error) {
        if (error instanceof AwsError) return jsonError(error.code, error.message, error.status);
        throw error;
      }
    },
  };
}

// ---------------------------------------------------------------- query protocols

/** Escapes text for XML content. */
export function xmlEscape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * Serialises plain data: objects become elements per key, arrays become repeated `listItem` elements
 * (`member` in the query protocol, `item` in EC2's), `undefined` is left out.
 */
export function toXml(value: unknown, listItem: string): string {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.map((v) => `<${listItem}>${toXml(v, listItem)}</${listItem}>`).join("");
  if (typeof value === "object") {
    return Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `<${k}>${toXml(v, listItem)}</${k}>`)
      .join("");
  }
  return xmlEscape(String(value));
}

/**
 * Reads a flattened list from query parameters: `Targets.member.1.Id=a&Targets.member.1.Port=80` gives
 * `[{Id: "a", Port: "80"}]`; `InstanceId.1=i-1` (EC2 style) gives `["i-1"]`.
 */
export function queryList(params: URLSearchParams, prefix: string): Array<string | Record<string, string>> {
  const items = new Map<number, string | Record<string, string>>();
  const pattern = new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.(?:member\\.)?(\\d+)(?:\\.(.+))?$`);
  for (const [key, value] of params) {
    const match = key.match(pattern);
    if (!match) continue;
    const index = Number(match[1]);
    if (match[2] === undefined) {
      items.set(index, value);
    } else {
      const item = items.get(index);
      const record = typeof item === "object" ? item : {};
      record[match[2]] = value;
      items.set(index, record);
    }
  }
  return [...items.entries()].sort(([a], [b]) => a - b).map(([, v]) => v);
}

export type QueryOperation = (params: URLSearchParams) => unknown | Promise<unknown>;

export interface QueryServiceOptions {
  /** `query` (ELBv2, IAM, ...): `<OpResponse><OpResult>`; `ec2`: `<OpResponse><requestId>` and `<item>` lists. */
  readonly flavor: "query" | "ec2";
  /** API version the SDK sends, e.g. `2015-12-01`. */
  readonly version: string;
  readonly xmlns: string;
  readonly operations: Readonly<Record<string, QueryOperation>>;
  readonly throttleCode: string;
}

export function awsQueryService(options: QueryServiceOptions): AwsEmulatorFraming {
  const calls = new CallLog();
  const xml = (status: number, body: string): SimResponse => ({
    status,
    headers: { "content-type": "text/xml", "x-amzn-requestid": requestId() },
    body: `<?xml version="1.0" encoding="UTF-8"?>\n${body}`,
  });
  const error = (code: string, message: string, status: number): SimResponse =>
    options.flavor === "ec2"
      ? xml(
        status,
        `<Response><Errors><Error><Code>${xmlEscape(code)}</Code><Message>${
          xmlEscape(message)
        }</Message></Error></Errors><RequestID>${requestId()}</RequestID></Response>`,
      )
      : xml(
        status,
        `<ErrorResponse xmlns="${options.xmlns}"><Error><Type>${status >= 500 ? "Receiver" : "Sender"}</Type><Code>${
          xmlEscape(code)
        }</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>${requestId()}</RequestId></ErrorResponse>`,
      );
  const actionOf = (request: SimRequest) => new URLSearchParams(request.body).get("Action") ?? "";
  return {
    calls,
    renderFaults: {
      throttled: (request) => {
        calls.add(actionOf(request));
        return error(options.throttleCode, "Rate exceeded", 400);
      },
      serverError: (request) => {
        calls.add(actionOf(request));
        return error(options.flavor === "ec2" ? "InternalError" : "InternalFailure", "An internal error occurred", 500);
      },
    },
    handle: async (request) => {
      const params = new URLSearchParams(request.body);
      for (const [k, v] of request.query) params.set(k, v);
      const action = params.get("Action") ?? "";
      calls.add(action);
      if (!(action in options.operations)) return error("InvalidAction", `The action ${action} is not valid`, 400);
      if (params.get("Version") !== options.version) {
        return error("InvalidParameterValue", `unsupported Version ${params.get("Version")}`, 400);
      }
      if (unsigned(request)) return error("MissingAuthenticationToken", "Request is missing Authentication Token", 400);
      try {
        const result = toXml(await options.operations[action](params), options.flavor === "ec2" ? "item" : "member");
        const body = options.flavor === "ec2"
          ? `<${action}Response xmlns="${options.xmlns}"><requestId>${requestId()}</requestId>${result}</${action}Response>`
          : `<${action}Response xmlns="${options.xmlns}"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata></${action}Response>`;
        return xml(200, body);
      } catch (caught) {
        if (caught instanceof AwsError) return error(caught.code, caught.message, caught.status);
        throw caught;
      }
    },
  };
}
