/**
 * `npm run bench:staged` — the staged path's memory and throughput.
 *
 * For 16, 64 and 256 MiB objects in S3 (s3rver), a fresh worker process
 * (bench/staged-worker.ts) alternates between
 *   (a) the relay: the staged-relay Lambda bundle, invoked as Lambda would,
 *       streaming the object into the Confluence stand-in (a third process,
 *       emptied between runs);
 *   (b) the baseline: the same S3 download piped straight into a plain
 *       multipart POST to the stand-in, with no relay logic.
 * It prints each path's peak RSS growth and throughput, and (a)/(b).
 *
 * The stand-in reads request bodies at a simulated 100 Mbit/s, as in
 * bench:direct (a WAN between AWS and Confluence); BENCH_LINK_MBIT changes
 * that, and BENCH_LINK_MBIT=0 measures over bare loopback, where the relay's
 * fixed per-file work (ledger, look-up, delete: ~30 ms) weighs most.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3RVER_CREDENTIALS, startS3rver } from '../functions/src/local/s3-local';
import { muteSdkNodeVersionWarning } from '../functions/src/local/quiet';
import { MiB, median, table } from './stats';

muteSdkNodeVersionWarning();

const SIZES_MIB = (process.env.BENCH_SIZES_MIB ?? '16,64,256').split(',').map(Number);
/** Counted runs per size; one more warms up. */
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const LINK_MBIT = Number(process.env.BENCH_LINK_MBIT ?? 100);
const BUCKET = 'bench-staging';
const TSX = path.join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'cli.mjs');

interface Sample {
  path: 'relay' | 'baseline';
  sizeMiB: number;
  ms: number;
  rssGrowthMiB: number;
}

async function main(): Promise<void> {
  const s3 = await startS3rver();
  try {
    const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: S3RVER_CREDENTIALS, requestChecksumCalculation: 'WHEN_REQUIRED' });
    await client.send(new CreateBucketCommand({ Bucket: BUCKET }));

    // Objects are written here, so the worker's memory holds none of them.
    const jobs: Array<{ sizeMiB: number; relayKey: string; baselineKey: string }> = [];
    for (const sizeMiB of SIZES_MIB) {
      const bytes = randomBytes(sizeMiB * MiB);
      for (let run = 0; run < RUNS + 1; run += 1) {
        const job = { sizeMiB, relayKey: `staging/bench/relay-${sizeMiB}-${run}`, baselineKey: `staging/bench/baseline-${sizeMiB}-${run}` };
        for (const key of [job.relayKey, job.baselineKey]) {
          await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes, ContentType: 'application/zip' }));
        }
        jobs.push(job);
      }
    }

    const worker = spawn(process.execPath, [TSX, path.join(__dirname, 'staged-worker.ts')], {
      env: { ...process.env, BENCH_JOBS: JSON.stringify(jobs), S3_ENDPOINT: s3.endpoint, STAGING_BUCKET: BUCKET },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const samples: Sample[] = [];
    readline.createInterface({ input: worker.stdout! }).on('line', (line) => {
      if (line.startsWith('{"sample"')) samples.push((JSON.parse(line) as { sample: Sample }).sample);
    });
    const verbose = process.env.BENCH_VERBOSE === '1';
    const code = await new Promise<number | null>((resolve) => worker.once('exit', resolve));
    if (code !== 0) throw new Error(`worker exited with ${code}`);

    if (verbose) for (const sample of samples) process.stdout.write(`${JSON.stringify(sample)}\n`);
    const rows = SIZES_MIB.map((sizeMiB) => {
      const of = (p: Sample['path']) => samples.filter((s) => s.sizeMiB === sizeMiB && s.path === p);
      const relayMs = median(of('relay').map((s) => s.ms));
      const baselineMs = median(of('baseline').map((s) => s.ms));
      const mbps = (ms: number) => (sizeMiB / (ms / 1000)).toFixed(1);
      return {
        object: `${sizeMiB} MiB`,
        runs: of('relay').length,
        'baseline MiB/s': mbps(baselineMs),
        'relay MiB/s': mbps(relayMs),
        'throughput ratio': (baselineMs / relayMs).toFixed(3),
        'baseline peak RSS growth': `${Math.max(...of('baseline').map((s) => s.rssGrowthMiB)).toFixed(1)} MiB`,
        'relay peak RSS growth': `${Math.max(...of('relay').map((s) => s.rssGrowthMiB)).toFixed(1)} MiB`,
      };
    });
    process.stdout.write(
      `\nStaged relay: S3 (s3rver) -> Confluence stand-in (${LINK_MBIT ? `${LINK_MBIT} Mbit/s link` : 'bare loopback'}), ${RUNS} runs per size after a warm-up, alternating (medians; RSS: max)\n`,
    );
    process.stdout.write(`${table(rows)}\n`);
  } finally {
    await s3.close();
  }
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
