/**
 * Memory of the relay for bench:baseline, measured as bench/direct-memory.ts
 * does: in this fresh process the uploads bundle (the code CDK deploys) is
 * invoked with API Gateway events built beforehand — what the Lambda runtime
 * already holds is in the baseline — and RSS is sampled every millisecond.
 * A 1 KiB upload warms the paths; then one measurement (BENCH_MODE): `single`
 * (one 4 MiB upload) or `concurrent` (20 invocations at once: on Lambda these
 * would be 20 instances; one process holding all 20 is the harsher case).
 * Also reports what building the events added to RSS (what the runtime holds).
 * Prints {"relay": {...}}. BENCH_BUNDLE_DIR reuses bundles built beforehand.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SymmetricAlgorithm, encodeSymmetric } from 'atlassian-jwt';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { buildHandlers } from '../../functions/src/local/build';
import { ensureTable, startDynalite } from '../../functions/src/local/dynamodb-local';
import { muteSdkNodeVersionWarning } from '../../functions/src/local/quiet';
import { documentClient } from '../../functions/src/store/dynamo';
import { dynamoTenantStore } from '../../functions/src/store/tenant-store';
import { sampleRss, startStandInChild, type MemorySample } from './memory';

muteSdkNodeVersionWarning();

type Handler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyStructuredResultV2>;
const MiB = 1024 * 1024;
const FILE_BYTES = 4 * MiB;
const COUNT = process.env.BENCH_MODE === 'concurrent' ? 20 : 1;

function event(method: string, rawPath: string, headers: Record<string, string>, body: Buffer, base64: boolean): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: `${method} ${rawPath}`,
    rawPath,
    rawQueryString: '',
    headers,
    requestContext: {
      accountId: '0', apiId: 'bench', domainName: 'localhost', domainPrefix: 'bench', requestId: randomUUID(), routeKey: `${method} ${rawPath}`,
      stage: '$default', time: new Date().toISOString(), timeEpoch: Date.now(),
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' },
    },
    body: body.toString(base64 ? 'base64' : 'utf8'),
    isBase64Encoded: base64,
  };
}

const context = () => ({ getRemainingTimeInMillis: () => 29_000, awsRequestId: randomUUID(), functionName: 'uploads' }) as unknown as Context;

async function main(): Promise<void> {
  const standIn = await startStandInChild(12_500_000);
  const { site } = standIn;
  const dynamo = await startDynalite();
  const ownBundles = !process.env.BENCH_BUNDLE_DIR;
  const bundleDir = process.env.BENCH_BUNDLE_DIR ?? mkdtempSync(path.join(os.tmpdir(), 'bench-bundles-'));
  try {
    Object.assign(process.env, {
      DYNAMODB_ENDPOINT: dynamo.endpoint, TABLE_NAME: 'bench', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'x',
      ALLOWED_TENANT_HOSTS: '127.0.0.1', ALLOW_HTTP_TENANTS: 'true', RELAY_BASE_URL: 'http://localhost:3000', ON_NAME_CONFLICT: 'fail',
      UPLOAD_AS: 'app', POWERTOOLS_LOG_LEVEL: 'WARN',
    });
    await ensureTable(dynamo.endpoint, 'bench');
    await dynamoTenantStore(documentClient({ dynamodbEndpoint: dynamo.endpoint }), 'bench').put({
      tenantId: site.clientKey, sharedSecret: site.sharedSecret, baseUrl: site.baseUrl, installedAt: new Date().toISOString(),
    });
    const bundles = ownBundles
      ? await buildHandlers(bundleDir)
      : { tickets: path.join(bundleDir, 'tickets', 'index.js'), uploads: path.join(bundleDir, 'uploads', 'index.js') };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tickets = (require(bundles.tickets) as { handler: Handler }).handler;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const uploads = (require(bundles.uploads) as { handler: Handler }).handler;

    let counter = 0;
    /** A ticket and the API Gateway event of one upload, as Lambda would receive it. */
    const uploadEvent = async (size: number): Promise<APIGatewayProxyEventV2> => {
      counter += 1;
      const name = `relay-memory-${counter}.bin`;
      const iat = Math.floor(Date.now() / 1000);
      const token = encodeSymmetric({ iss: site.clientKey, sub: 'bench-user', iat, exp: iat + 300, qsh: 'context-qsh' }, site.sharedSecret, SymmetricAlgorithm.HS256);
      const issued = await tickets(
        event('POST', '/tickets', { authorization: `JWT ${token}`, 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ contentId: '1001', files: [{ name, size }] })), false),
        context(),
      );
      const ticket = (JSON.parse(String(issued.body)) as { ticket: string }).ticket;
      const boundary = `benchboundary${counter}`;
      const body = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
        randomBytes(size),
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      return event('POST', '/uploads', { authorization: `Bearer ${ticket}`, 'content-type': `multipart/form-data; boundary=${boundary}` }, body, true);
    };
    const upload = async (count: number, size: number): Promise<MemorySample & { eventsBytes: number }> => {
      const before = await sampleRss(async () => undefined);
      const events = await Promise.all(Array.from({ length: count }, () => uploadEvent(size)));
      let results: APIGatewayProxyStructuredResultV2[] = [];
      const sample = await sampleRss(async () => {
        results = await Promise.all(events.map((e) => uploads(e, context())));
      });
      const failed = results.find((result) => result.statusCode !== 200);
      if (failed) throw new Error(`relay upload failed: ${failed.statusCode} ${failed.body}`);
      return { ...sample, eventsBytes: sample.baselineBytes - before.baselineBytes };
    };

    await upload(1, 1024);
    const measured = await upload(COUNT, FILE_BYTES);
    process.stdout.write(`${JSON.stringify({ relay: { count: COUNT, ...measured } })}\n`);
  } finally {
    standIn.stop();
    await dynamo.close();
    if (ownBundles) rmSync(bundleDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
