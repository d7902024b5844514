/**
 * What every AWS SDK client in this project shares: one attempt per call (retries are ours, so the
 * emulators and the operator see exactly the calls we decide to make), hard timeouts, and a lean
 * credential source chosen from the environment instead of the SDK's full default chain, which would
 * load SSO, INI and process providers a sidecar never uses.
 *
 * Endpoints follow the SDK's standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables.
 * @module
 */
import type { Readable } from "node:stream";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import type { AwsCredentialIdentityProvider, HttpHandlerOptions, HttpResponse, RequestHandler } from "@smithy/types";

/**
 * One set of AWS credentials, as every SDK v3 client accepts them.
 *
 * @example
 * ```ts
 * const fromEnv: AwsCredentials = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG" };
 * ```
 */
export interface AwsCredentials {
  /** The access key id (`AWS_ACCESS_KEY_ID`). */
  readonly accessKeyId: string;
  /** The secret access key (`AWS_SECRET_ACCESS_KEY`). */
  readonly secretAccessKey: string;
  /** The session token of temporary credentials (`AWS_SESSION_TOKEN`). */
  readonly sessionToken?: string;
  /** When temporary credentials stop working; the SDK asks again before then. */
  readonly expiration?: Date;
}

/**
 * Resolves the current credentials; an SDK client calls it before it signs a request.
 *
 * @example
 * ```ts
 * const staticKeys: CredentialsProvider = () =>
 *   Promise.resolve({ accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG" });
 * ```
 */
export type CredentialsProvider = () => Promise<AwsCredentials>;

/**
 * Where and how patiently an SDK client talks to AWS.
 *
 * @example
 * ```ts
 * const options: AwsClientOptions = { region: "eu-west-1", timeoutMs: 5_000 };
 * ```
 */
export interface AwsClientOptions {
  /** The region of the API, such as `eu-west-1`. */
  readonly region: string;
  /** Whole-call timeout: connect, send, the answer's headers and its whole body. */
  readonly timeoutMs?: number;
}

type HttpRequest = Parameters<NodeHttpHandler["handle"]>[0];

/**
 * The SDK's node:http handler with one deadline for the whole call. Its own `requestTimeout` ends with
 * the answer's headers and then only bounds the idle time between two bytes (setSocketTimeout in
 * @smithy/node-http-handler), so an answer that trickles its body a byte a second held a call for
 * minutes. Here one timer covers the call until its body has been read: when it fires, the request
 * is aborted, or the body stream is destroyed with a `TimeoutError`, which retries count as transient.
 */
class WholeCallTimeoutHandler {
  readonly #inner: NodeHttpHandler;

  constructor(readonly timeoutMs: number) {
    this.#inner = new NodeHttpHandler({
      connectionTimeout: Math.min(timeoutMs, 3_000),
      requestTimeout: timeoutMs,
      // Without throwOnRequestTimeout the SDK only logs a warning and a blackholed endpoint hangs forever.
      throwOnRequestTimeout: true,
    });
  }

  get metadata() {
    return this.#inner.metadata;
  }

  async handle(request: HttpRequest, options: HttpHandlerOptions = {}) {
    const timeout = new AbortController();
    let body: Readable | undefined;
    const timer = setTimeout(() => {
      const error = Object.assign(new Error(`no complete answer within ${this.timeoutMs} ms`), {
        name: "TimeoutError",
      });
      body?.destroy(error);
      timeout.abort(error);
    }, this.timeoutMs);
    const caller = options.abortSignal as AbortSignal | undefined;
    const abortSignal = caller ? AbortSignal.any([caller, timeout.signal]) : timeout.signal;
    try {
      const answer = await this.#inner.handle(request, { ...options, abortSignal });
      body = answer.response.body as Readable;
      body.once("close", () => clearTimeout(timer));
      return answer;
    } catch (error) {
      clearTimeout(timer);
      throw timeout.signal.aborted && !caller?.aborted ? timeout.signal.reason : error;
    }
  }

  updateHttpClientConfig(key: never, value: never): void {
    this.#inner.updateHttpClientConfig(key, value);
  }

  httpHandlerConfigs() {
    return this.#inner.httpHandlerConfigs();
  }

  destroy(): void {
    this.#inner.destroy();
  }
}

/**
 * Credentials for the environment the role runs in, in the order the SDK itself would find them:
 * static keys in the environment, then the ECS container credentials endpoint (task role), then the
 * EC2 instance metadata service (a task without a role on EC2 uses the instance's).
 *
 * @example
 * ```ts
 * const credentials = credentialsFromEnvironment(Deno.env.toObject());
 * const { accessKeyId } = await credentials();
 * ```
 */
export function credentialsFromEnvironment(
  env: Readonly<Record<string, string | undefined>>,
): CredentialsProvider {
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    const identity = {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      sessionToken: env.AWS_SESSION_TOKEN || undefined,
    };
    return () => Promise.resolve(identity);
  }
  if (env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI || env.AWS_CONTAINER_CREDENTIALS_FULL_URI) {
    let provider: AwsCredentialIdentityProvider | undefined;
    return withinCredentialsBound(async () => {
      provider ??= (await import("@smithy/credential-provider-imds")).fromContainerMetadata(CREDENTIAL_TRIES);
      return provider();
    });
  }
  let provider: AwsCredentialIdentityProvider | undefined;
  return withinCredentialsBound(async () => {
    provider ??= (await import("@smithy/credential-provider-imds")).fromInstanceMetadata(CREDENTIAL_TRIES);
    return provider();
  });
}

const CREDENTIAL_TRIES = { timeout: 2_000, maxRetries: 2 };
/** Every try may take its whole timeout, plus a little for the connects. */
const CREDENTIALS_BOUND_MS = CREDENTIAL_TRIES.timeout * (CREDENTIAL_TRIES.maxRetries + 1) + 1_000;

/**
 * The providers' `timeout` is a socket inactivity timeout, so an endpoint that trickles its answer held
 * a call for as long as the answer has bytes, before the request handler's own deadline even starts.
 * Past the bound the call fails with a `TimeoutError`, which retries count as transient; the request
 * left behind ends with its socket.
 */
function withinCredentialsBound(provider: AwsCredentialIdentityProvider): AwsCredentialIdentityProvider {
  return () =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(Object.assign(new Error(`no credentials within ${CREDENTIALS_BOUND_MS} ms`), { name: "TimeoutError" }));
      }, CREDENTIALS_BOUND_MS);
      provider().then(resolve, reject).finally(() => clearTimeout(timer));
    });
}

/**
 * Constructor options for any SDK v3 client: one attempt per call, hard timeouts, credentials from
 * {@link credentialsFromEnvironment}.
 *
 * @example
 * ```ts
 * import { ECSClient } from "@aws-sdk/client-ecs";
 *
 * const ecs = new ECSClient(awsClientConfig({ region: "eu-west-1", timeoutMs: 5_000 }));
 * ```
 */
export interface AwsClientConfig {
  /** The region of the API. */
  readonly region: string;
  /** Always 1: the caller retries, classified (see `retry`). */
  readonly maxAttempts: number;
  /** The credential source. */
  readonly credentials: CredentialsProvider;
  /** Sends each request with one deadline over the whole call, body included; a timeout is an error. */
  readonly requestHandler: RequestHandler<HttpRequest, HttpResponse, HttpHandlerOptions>;
}

/**
 * Constructor options for any SDK v3 client.
 *
 * @example
 * ```ts
 * import { ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
 *
 * const elb = new ElasticLoadBalancingV2Client(awsClientConfig({ region: "eu-west-1" }, Deno.env.toObject()));
 * ```
 */
export function awsClientConfig(
  options: AwsClientOptions,
  env: Readonly<Record<string, string | undefined>> = Deno.env.toObject(),
): AwsClientConfig {
  return {
    region: options.region,
    maxAttempts: 1,
    credentials: credentialsFromEnvironment(env),
    requestHandler: new WholeCallTimeoutHandler(options.timeoutMs ?? 10_000),
  };
}
