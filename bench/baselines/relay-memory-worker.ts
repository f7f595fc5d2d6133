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
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SymmetricAlgorithm, encodeSymmetric } from 'atlassian-jwt';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { buildHandlers } from '../../functions/src/local/build';
import { apiEvent, lambdaContext, startInProcessStore, type Handler } from '../in-process';
import { muteSdkNodeVersionWarning } from '../../functions/src/local/quiet';
import { sampleRss, startStandInChild, type MemorySample } from './memory';

muteSdkNodeVersionWarning();

const MiB = 1024 * 1024;
const FILE_BYTES = 4 * MiB;
const COUNT = process.env.BENCH_MODE === 'concurrent' ? 20 : 1;

const context = () => lambdaContext('uploads');

async function main(): Promise<void> {
  const standIn = await startStandInChild(12_500_000);
  const { site } = standIn;
  const dynamo = await startInProcessStore(site, { UPLOAD_AS: 'app' });
  const ownBundles = !process.env.BENCH_BUNDLE_DIR;
  const bundleDir = process.env.BENCH_BUNDLE_DIR ?? mkdtempSync(path.join(os.tmpdir(), 'bench-bundles-'));
  try {
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
        apiEvent('POST', '/tickets', { authorization: `JWT ${token}`, 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ contentId: '1001', files: [{ name, size }] })), false),
        context(),
      );
      const ticket = (JSON.parse(String(issued.body)) as { ticket: string }).ticket;
      const boundary = `benchboundary${counter}`;
      const body = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
        randomBytes(size),
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      return apiEvent('POST', '/uploads', { authorization: `Bearer ${ticket}`, 'content-type': `multipart/form-data; boundary=${boundary}` }, body, true);
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
