/**
 * The measured process of bench:staged (see bench/staged.ts): runs the
 * staged-relay bundle and the plain baseline in turns and prints one JSON
 * line per run with its time and peak RSS growth (RSS sampled every 1 ms,
 * from a baseline taken after a forced GC).
 */
import http from 'node:http';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Context } from 'aws-lambda';
import { SymmetricAlgorithm, createQueryStringHash, encodeSymmetric, fromMethodAndUrl } from 'atlassian-jwt';
import type { Readable } from 'node:stream';
import { buildHandlers } from '../functions/src/local/build';
import { ensureTable, startDynalite } from '../functions/src/local/dynamodb-local';
import { S3RVER_CREDENTIALS } from '../functions/src/local/s3-local';
import { muteSdkNodeVersionWarning } from '../functions/src/local/quiet';
import { documentClient } from '../functions/src/store/dynamo';
import { dynamoTenantStore } from '../functions/src/store/tenant-store';
import { dynamoTicketStore } from '../functions/src/store/ticket-store';
import { MiB } from './stats';
import { sampleRss } from './rss';

muteSdkNodeVersionWarning();

const jobs = JSON.parse(process.env.BENCH_JOBS ?? '[]') as Array<{ sizeMiB: number; relayKey: string; baselineKey: string }>;
let site: { baseUrl: string; clientKey: string; sharedSecret: string };
const BUCKET = process.env.STAGING_BUCKET as string;

/** Time and peak RSS growth of one run (bench/rss.ts). */
async function measure(run: () => Promise<void>): Promise<{ ms: number; rssGrowthMiB: number }> {
  let ms = 0;
  const { baselineBytes, peakBytes } = await sampleRss(async () => {
    const started = performance.now();
    await run();
    ms = performance.now() - started;
  });
  return { ms, rssGrowthMiB: (peakBytes - baselineBytes) / MiB };
}

/** The baseline: S3 download → a hand-written multipart envelope → one POST to the stand-in, as the app. */
async function plainRelay(s3: S3Client, key: string, size: number): Promise<void> {
  const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const boundary = `baseline${randomUUID().replace(/-/g, '')}`;
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${key.split('/').pop()}.zip"\r\nContent-Type: application/zip\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const url = `${site.baseUrl}/rest/api/content/1001/child/attachment`;
  const iat = Math.floor(Date.now() / 1000);
  const jwt = encodeSymmetric(
    { iss: 'confluence-upload-relay', iat, exp: iat + 600, qsh: createQueryStringHash(fromMethodAndUrl('POST', url), false, site.baseUrl) },
    site.sharedSecret,
    SymmetricAlgorithm.HS256,
  );
  const request = http.request(url, {
    method: 'POST',
    headers: {
      authorization: `JWT ${jwt}`,
      'x-atlassian-token': 'no-check',
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(head.length + size + tail.length),
    },
  });
  const answered = new Promise<number>((resolve, reject) => {
    request.once('response', (response) => {
      response.resume();
      response.once('end', () => resolve(response.statusCode ?? 0));
    });
    request.once('error', reject);
  });
  async function* body() {
    yield head;
    yield* object.Body as Readable;
    yield tail;
  }
  await pipeline(body(), request);
  const status = await answered;
  if (status !== 200) throw new Error(`baseline upload answered ${status}`);
}

async function main(): Promise<void> {
  const standIn = spawn(process.execPath, [path.join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'cli.mjs'), path.join(__dirname, 'stand-in-child.ts')], {
    // The stand-in reads uploads at the simulated link speed (0 = as fast as loopback allows).
    env: { ...process.env, PAGES: '1001', BYTES_PER_SECOND: String((Number(process.env.BENCH_LINK_MBIT ?? 100) * 1e6) / 8) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: standIn.stdout! });
  const nextLine = () => new Promise<string>((resolve) => lines.once('line', resolve));
  site = JSON.parse(await nextLine()) as typeof site;
  /** Empties the stand-in and lets it settle, so every run meets the same stand-in. */
  const resetStandIn = async () => {
    const answered = nextLine();
    standIn.stdin!.write('reset\n');
    await answered;
    await new Promise((resolve) => setTimeout(resolve, 100));
  };
  const dynamo = await startDynalite();
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'bench-bundles-'));
  try {
    Object.assign(process.env, {
      DYNAMODB_ENDPOINT: dynamo.endpoint, TABLE_NAME: 'bench', AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      ALLOWED_TENANT_HOSTS: '127.0.0.1', ALLOW_HTTP_TENANTS: 'true', RELAY_BASE_URL: 'http://localhost:3000',
      UPLOAD_AS: 'app', ON_NAME_CONFLICT: 'fail', POWERTOOLS_LOG_LEVEL: 'WARN', POWERTOOLS_METRICS_DISABLED: 'true', MAX_FILE_BYTES: String(1024 * MiB),
      UPSTREAM_TIMEOUT_MS: '600000',
    });
    await ensureTable(dynamo.endpoint, 'bench');
    const client = documentClient({ dynamodbEndpoint: dynamo.endpoint });
    await dynamoTenantStore(client, 'bench').put({ tenantId: site.clientKey, sharedSecret: site.sharedSecret, baseUrl: site.baseUrl, installedAt: new Date().toISOString() });
    const tickets = dynamoTicketStore(client, 'bench');
    const bundles = await buildHandlers(bundleDir);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const relay = (require(bundles['staged-relay']) as { handler: (event: unknown, context: Context) => Promise<void> }).handler;
    const s3 = new S3Client({ endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: 'us-east-1', credentials: S3RVER_CREDENTIALS });
    const context = () => ({ getRemainingTimeInMillis: () => 900_000, awsRequestId: randomUUID(), functionName: 'staged-relay' }) as unknown as Context;

    // The first job of each size warms both paths (lazy set-up, JIT) and is not reported.
    const seen = new Set<number>();
    for (const [i, job] of jobs.entries()) {
      const warmUp = !seen.has(job.sizeMiB);
      seen.add(job.sizeMiB);
      const size = job.sizeMiB * MiB;
      const ticketHash = randomUUID().replace(/-/g, '').padEnd(64, '0');
      await tickets.put({
        tenantId: site.clientKey, ticketHash, accountId: 'bench-user', contentId: '1001',
        files: [{ name: `relay-${i}.zip`, size, type: 'application/zip', stagingKey: job.relayKey }],
        minorEdit: true, expiresAt: Math.floor(Date.now() / 1000) + 3600,
      });
      await tickets.claimFile((await tickets.get(site.clientKey, ticketHash))!, 0, 900, Math.floor(Date.now() / 1000));
      // Alternate which path goes first, so neither always meets a busier stand-in.
      let baseline = { ms: 0, rssGrowthMiB: 0 };
      let relayed = { ms: 0, rssGrowthMiB: 0 };
      const runBaseline = async () => {
        await resetStandIn();
        baseline = await measure(() => plainRelay(s3, job.baselineKey, size));
      };
      const runRelay = async () => {
        await resetStandIn();
        relayed = await measure(() => relay({ tenantId: site.clientKey, ticketHash, fileIndex: 0 }, context()));
      };
      if (i % 2 === 0) {
        await runBaseline();
        await runRelay();
      } else {
        await runRelay();
        await runBaseline();
      }
      const state = await tickets.getFile((await tickets.get(site.clientKey, ticketHash))!, 0);
      if (state.state !== 'done') throw new Error(`relay did not finish: ${JSON.stringify(state)}`);
      if (warmUp) continue;
      process.stdout.write(`${JSON.stringify({ sample: { path: 'baseline', sizeMiB: job.sizeMiB, ...baseline } })}\n`);
      process.stdout.write(`${JSON.stringify({ sample: { path: 'relay', sizeMiB: job.sizeMiB, ...relayed } })}\n`);
    }
  } finally {
    standIn.stdin?.end();
    await dynamo.close();
    rmSync(bundleDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
