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

export interface AwsClientOptions {
  readonly region: string;
  /** Whole-request timeout (connect, send, answer). */
  readonly timeoutMs?: number;
}

/**
 * Credentials for the environment the role runs in, in the order the SDK itself would find them:
 * static keys in the environment, then the ECS container credentials endpoint (task role), then the
 * EC2 instance metadata service (a task without a role on EC2 uses the instance's).
 */
export function credentialsFromEnvironment(
  env: Readonly<Record<string, string | undefined>>,
): AwsCredentialIdentityProvider {
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

/** Constructor options for any SDK v3 client. */
export function awsClientConfig(
  options: AwsClientOptions,
  env: Readonly<Record<string, string | undefined>> = Deno.env.toObject(),
) {
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
