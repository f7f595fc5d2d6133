/**
 * The direct-upload handler's own memory footprint (bench:direct, part 2).
 *
 * In this fresh process: start dynalite, store a tenant and issue a ticket
 * (through the tickets bundle), build the API Gateway event of a 4 MiB
 * multipart upload, force a GC and take the RSS as the baseline; then invoke
 * the uploads bundle (the code CDK deploys) and sample RSS every millisecond
 * while it runs. Prints (peak - baseline) / file size. The event itself (what
 * the Lambda runtime already holds) is in the baseline. The stand-in runs in
 * another process, reading at 100 Mbit/s.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { SymmetricAlgorithm, encodeSymmetric } from 'atlassian-jwt';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { buildHandlers } from '../functions/src/local/build';
import { MiB } from './stats';
import { sampleRss } from './rss';
import { apiEvent, lambdaContext, startInProcessStore, type Handler } from './in-process';
import { muteSdkNodeVersionWarning } from '../functions/src/local/quiet';

muteSdkNodeVersionWarning();


const FILE_BYTES = 4 * MiB;

const context = () => lambdaContext('bench');
async function main(): Promise<void> {
  const standIn = spawn(process.execPath, [path.join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'cli.mjs'), path.join(__dirname, 'stand-in-child.ts')], {
    env: { ...process.env, BYTES_PER_SECOND: '12500000' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const firstLine = await new Promise<string>((resolve) => readline.createInterface({ input: standIn.stdout! }).once('line', resolve));
  const site = JSON.parse(firstLine) as { origin: string; baseUrl: string; clientKey: string; sharedSecret: string };
  const dynamo = await startInProcessStore(site, { POWERTOOLS_METRICS_DISABLED: 'true' });
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'bench-bundles-'));
  try {
    const bundles = await buildHandlers(bundleDir);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tickets = (require(bundles.tickets) as { handler: Handler }).handler;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const uploads = (require(bundles.uploads) as { handler: Handler }).handler;

    const samples: Array<{ label: string; ratio: number; peakMiB: number; baselineMiB: number }> = [];
    for (let run = 0; run < 4; run += 1) {
      // Run 0 is a 1 KiB warm-up: it loads the lazy code paths (SDK credential and
      // HTTP agent set-up, JIT) once, as any warm Lambda container has done.
      const fileBytes = run === 0 ? 1024 : FILE_BYTES;
      const name = `memory-${run}.bin`;
      const iat = Math.floor(Date.now() / 1000);
      const token = encodeSymmetric({ iss: site.clientKey, sub: 'bench-user', iat, exp: iat + 300, qsh: 'context-qsh' }, site.sharedSecret, SymmetricAlgorithm.HS256);
      const ticketBody = Buffer.from(JSON.stringify({ contentId: '1001', files: [{ name, size: fileBytes }] }));
      const issued = await tickets(apiEvent('POST', '/tickets', { authorization: `JWT ${token}`, 'content-type': 'application/json' }, ticketBody, false), context());
      const ticket = (JSON.parse(String(issued.body)) as { ticket: string }).ticket;

      const boundary = 'benchboundary0123456789';
      let multipart: Buffer | undefined = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
        randomBytes(fileBytes),
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const uploadEvent = apiEvent('POST', '/uploads', { authorization: `Bearer ${ticket}`, 'content-type': `multipart/form-data; boundary=${boundary}` }, multipart, true);
      multipart = undefined; // only the event (as the Lambda runtime holds it) stays
      let result: APIGatewayProxyStructuredResultV2 = { statusCode: 0 };
      const { baselineBytes: baseline, peakBytes: peak } = await sampleRss(async () => {
        result = await uploads(uploadEvent, context());
      });
      if (result.statusCode !== 200) throw new Error(`upload failed: ${result.statusCode} ${result.body}`);
      // The first run loads code paths (lazy module init); it is reported but not counted.
      samples.push({ label: run === 0 ? 'warm-up' : `run ${run}`, ratio: (peak - baseline) / fileBytes, peakMiB: peak / MiB, baselineMiB: baseline / MiB });
    }
    const counted = samples.filter((s) => s.label !== 'warm-up');
    process.stdout.write(`\nDirect upload handler memory, 4 MiB file (fresh process, RSS sampled every 1 ms)\n`);
    for (const s of samples) {
      const ratio = s.label === 'warm-up' ? '(1 KiB warm-up, not counted)' : `(peak - baseline) / file = ${s.ratio.toFixed(3)}`;
      process.stdout.write(`  ${s.label.padEnd(8)} baseline ${s.baselineMiB.toFixed(1)} MiB, peak ${s.peakMiB.toFixed(1)} MiB, ${ratio}\n`);
    }
    process.stdout.write(`handler memory ratio (max of counted runs): ${Math.max(...counted.map((s) => s.ratio)).toFixed(3)} x file size\n`);
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
