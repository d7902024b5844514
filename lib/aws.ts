/**
 * What every AWS SDK client in this project shares: one attempt per call (retries are ours, so the
 * emulators and the operator see exactly the calls we decide to make), hard timeouts, and a lean
 * credential source chosen from the environment instead of the SDK's full default chain, which would
 * load SSO, INI and process providers a sidecar never uses.
 *
 * Endpoints follow the SDK's standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables.
 * @module
 */
import type { AwsCredentialIdentityProvider } from "@smithy/types";

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
  /** Whole-request timeout (connect, send, answer). */
  readonly timeoutMs?: number;
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
    return async () => {
      provider ??= (await import("@smithy/credential-provider-imds")).fromContainerMetadata({
        timeout: 2_000,
        maxRetries: 2,
      });
      return provider();
    };
  }
  let provider: AwsCredentialIdentityProvider | undefined;
  return async () => {
    provider ??= (await import("@smithy/credential-provider-imds")).fromInstanceMetadata({
      timeout: 2_000,
      maxRetries: 2,
    });
    return provider();
  };
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
  /** Connect and whole-request timeouts in milliseconds; a timeout is an error, not a warning. */
  readonly requestHandler: {
    readonly connectionTimeout: number;
    readonly requestTimeout: number;
    readonly throwOnRequestTimeout: boolean;
  };
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
  const timeoutMs = options.timeoutMs ?? 10_000;
  return {
    region: options.region,
    maxAttempts: 1,
    credentials: credentialsFromEnvironment(env),
    // Without throwOnRequestTimeout the SDK only logs a warning and a blackholed endpoint hangs forever.
    requestHandler: {
      connectionTimeout: Math.min(timeoutMs, 3_000),
      requestTimeout: timeoutMs,
      throwOnRequestTimeout: true,
    },
  };
}
