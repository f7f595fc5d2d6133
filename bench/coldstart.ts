/**
 * `npm run bench:coldstart` — what a cold start costs before any request:
 * each deployed bundle's size (minified, source map excluded) and its module
 * init time (require() of the bundle in a fresh Node process: module
 * evaluation, config read, client construction), median of several runs.
 * Targets: <= 1 MB per bundle, <= 150 ms init.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildHandlers } from '../functions/src/local/build';
import { median, table } from './stats';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const SIZE_TARGET_BYTES = 1024 * 1024;
const INIT_TARGET_MS = 150;

const PROBE = `
const started = performance.now();
require(process.argv[1]);
process.stdout.write(String(performance.now() - started));
`;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coldstart-'));
  try {
    const bundles = await buildHandlers(dir);
    const env = { ...process.env, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'x', STAGING_BUCKET: 'bucket', TABLE_NAME: 'table', NODE_NO_WARNINGS: '1' };
    const rows = Object.entries(bundles)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([handler, file]) => {
        const bytes = statSync(file).size;
        const times = Array.from({ length: RUNS }, () => Number(execFileSync(process.execPath, ['-e', PROBE, file], { env }).toString()));
        const initMs = median(times);
        return {
          function: handler,
          'bundle (minified)': `${(bytes / 1024).toFixed(0)} KiB`,
          'size target': bytes <= SIZE_TARGET_BYTES ? 'ok' : 'OVER',
          'module init (median)': `${initMs.toFixed(1)} ms`,
          'init target': initMs <= INIT_TARGET_MS ? 'ok' : 'OVER',
        };
      });
    process.stdout.write(`\nCold start on Node ${process.version}, ${RUNS} fresh processes per bundle (targets: <= 1 MiB, <= ${INIT_TARGET_MS} ms)\n`);
    process.stdout.write(`${table(rows)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  process.stderr.write(`${error.stack ?? error.message}\n`);
  process.exit(1);
});
