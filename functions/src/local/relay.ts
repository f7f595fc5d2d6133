import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createApiGatewayServer, type LambdaHandler } from './api-gateway';
import { buildHandlers } from './build';
import { ensureTable, startDynalite } from './dynamodb-local';
import { ROUTES, STAGED_RELAY_HANDLER } from '../routes';
import { S3RVER_CREDENTIALS, ensureBucket, startS3rver } from './s3-local';
import { startLambdaInvokeEmulator, type AsyncHandler } from './lambda-invoke';
import { runUntilSignalled } from './run-until-signalled';

export interface LocalRelay {
  url: string;
  server: http.Server;
  close(): Promise<void>;
}

export interface LocalRelayOptions {
  /** Environment for the handlers; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Where to write the bundles; defaults to dist/functions. */
  outDir?: string;
}

/**
 * `npm run relay`: the relay as API Gateway + Lambda would run it. Builds the
 * Lambda bundles, starts dynalite and s3rver unless DYNAMODB_ENDPOINT /
 * S3_ENDPOINT are set, creates the table and the staging bucket, emulates
 * asynchronous Lambda invocation in-process, loads the bundles with the
 * contract's environment, and listens.
 */
export async function startLocalRelay(options: LocalRelayOptions = {}): Promise<LocalRelay> {
  const env = options.env ?? process.env;
  const port = Number(env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`Invalid configuration: PORT must be a port number, got "${env.PORT}"`);
  const cleanups: Array<() => Promise<void>> = [];

  if (!env.DYNAMODB_ENDPOINT) {
    const dynamo = await startDynalite();
    env.DYNAMODB_ENDPOINT = dynamo.endpoint;
    cleanups.push(dynamo.close);
  }
  env.TABLE_NAME ??= 'upload-relay';
  if (!env.S3_ENDPOINT) {
    const s3 = await startS3rver();
    env.S3_ENDPOINT = s3.endpoint;
    cleanups.push(s3.close);
  }
  env.STAGING_BUCKET ??= 'upload-relay-staging';
  // The editor page's CSP (connect-src) lets browsers POST staged files to the bucket, as the stack sets it in AWS.
  env.STAGING_UPLOAD_ORIGIN ??= new URL(env.S3_ENDPOINT).origin;
  // Forge tokens held by tickets are sealed with a key generated for this run (KMS in AWS).
  if (!env.TOKEN_KMS_KEY_ID) env.TOKEN_ENCRYPTION_KEY ??= randomBytes(32).toString('base64');
  // The SDK needs a region and credentials; dynalite accepts any, s3rver only its own.
  env.AWS_REGION ??= 'us-east-1';
  env.AWS_ACCESS_KEY_ID ??= S3RVER_CREDENTIALS.accessKeyId;
  env.AWS_SECRET_ACCESS_KEY ??= S3RVER_CREDENTIALS.secretAccessKey;
  env.POWERTOOLS_DEV ??= 'false';
  // As on Lambda: lets Powertools mark the first invocation of each function as a cold start.
  env.AWS_LAMBDA_INITIALIZATION_TYPE ??= 'on-demand';
  await ensureTable(env.DYNAMODB_ENDPOINT, env.TABLE_NAME);

  // Listen first: with PORT=0 the public URL (descriptor baseUrl, lifecycle aud) is known only now.
  const handlers: Record<string, LambdaHandler> = {};
  const server = createApiGatewayServer({ routes: ROUTES, handlers });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, env.HOST ?? '127.0.0.1', () => resolve());
  });
  const { port: actualPort } = server.address() as AddressInfo;
  env.PORT = String(actualPort);
  env.RELAY_BASE_URL ??= `http://localhost:${actualPort}`;
  await ensureBucket(env.S3_ENDPOINT, env.STAGING_BUCKET, new URL(env.RELAY_BASE_URL).origin);

  // Asynchronous invocations (the staged relay) go through an emulated Lambda Invoke API.
  const deliveries = Number(env.LOCAL_ASYNC_DELIVERIES ?? 1);
  if (!Number.isInteger(deliveries) || deliveries < 1 || deliveries > 5) throw new Error('LOCAL_ASYNC_DELIVERIES must be 1–5');
  const lambda = await startLambdaInvokeEmulator(
    handlers as Record<string, AsyncHandler>,
    (name, error) => {
      process.stderr.write(`${JSON.stringify({ level: 'ERROR', message: 'async invocation failed', function: name, error: String(error) })}\n`);
    },
    deliveries,
  );
  cleanups.push(lambda.close);
  env.LAMBDA_ENDPOINT ??= lambda.endpoint;
  env.STAGED_RELAY_FUNCTION ??= STAGED_RELAY_HANDLER;

  const bundles = await buildHandlers(options.outDir ?? env.LOCAL_BUNDLE_DIR);
  // The bundles read their configuration from process.env at load, as on Lambda.
  if (env !== process.env) Object.assign(process.env, env);
  for (const [name, file] of Object.entries(bundles)) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    handlers[name] = (require(file) as { handler: LambdaHandler }).handler;
  }
  return {
    url: env.RELAY_BASE_URL,
    server,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // Cleanups run newest first: pending staged relays finish before the stores close.
      for (const cleanup of cleanups.reverse()) await cleanup();
    },
  };
}

if (require.main === module) {
  runUntilSignalled('Relay', () => startLocalRelay(), (relay) => [`Relay listening on ${relay.url} (health: ${relay.url}/health)`]);
}
