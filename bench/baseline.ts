/**
 * `npm run bench:baseline` — the relay side by side with the usual vendor
 * relay (bench/baselines/express-multer-relay.ts: Express + multer
 * memoryStorage + a form-data re-post), both against the same Confluence
 * stand-in reading at a simulated 100 Mbit/s.
 *
 * Latency: for 1 MiB and 4 MiB files, rounds rotate the order of four paths —
 * (a) through `npm run relay` (ticket fetched first, not timed), (b) through
 * the baseline server (a child process; tenant secrets read from DynamoDB,
 * as apps do), (b′) the same server with the secrets in a Map (reported, a
 * lower bound), (c) straight to the stand-in as the app — and "added" is
 * median(a, b or b′) − median(c).
 *
 * Memory: every measurement in a fresh process (bench/baselines/*-memory-
 * worker.ts), RSS sampled every 1 ms as bench/direct-memory.ts does: for the
 * relay, the uploads bundle invoked with API Gateway events built beforehand
 * (the event the Lambda runtime holds is in the baseline, and reported on its
 * own); for the baseline, the Express server receiving from another process.
 * One 4 MiB upload (BENCH_MEMORY_RUNS processes each, median), then 20 at once.
 *
 * Acceptance (issue 8): relay peak memory per 4 MiB upload ≤ 0.5 × the
 * baseline's, and added latency ≤ the baseline's.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { startConfluenceStandIn } from '../test/confluence-stand-in/stand-in';
import { startRelayProcess } from '../test/helpers/relay-process';
import { RelayClient } from '../test/helpers/relay-client';
import { buildHandlers } from '../functions/src/local/build';
import { muteSdkNodeVersionWarning } from '../functions/src/local/quiet';
import { MiB, formatMs, median, percentile, table } from './stats';
import { multipart, postStraight } from './requests';

/** Spread of a path's samples: the 75th minus the 25th percentile. */
const interquartile = (samples: number[]) => percentile(samples, 75) - percentile(samples, 25);

muteSdkNodeVersionWarning();

const RUNS = Number(process.env.BENCH_RUNS ?? 41);
const MEMORY_RUNS = Number(process.env.BENCH_MEMORY_RUNS ?? 5);
const LINK_BYTES_PER_SECOND = 12_500_000; // 100 Mbit/s
const PAGE = '1001';
const TSX = path.join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'cli.mjs');

type PathName = 'relay' | 'baseline' | 'baselineInMemory' | 'straight';

async function measureLatency(): Promise<Array<{ sizeMiB: number; ms: Record<PathName, number>; iqr: Record<PathName, number> }>> {
  const standIn = await startConfluenceStandIn({ bytesPerSecond: LINK_BYTES_PER_SECOND });
  const site = standIn.site();
  site.addPage(PAGE);
  const relay = await startRelayProcess({
    CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    ON_NAME_CONFLICT: 'fail',
    // The baseline posts as the app; so does the relay here (no token exchange in either).
    UPLOAD_AS: 'app',
    POWERTOOLS_LOG_LEVEL: 'WARN',
  });
  const startBaseline = async (store: 'dynamodb' | 'memory') => {
    const child = spawn(process.execPath, [TSX, path.join(__dirname, 'baselines', 'express-multer-relay.ts')], {
      env: {
        ...process.env,
        PORT: '0',
        BASELINE_TENANT_STORE: store,
        BASELINE_TENANTS: JSON.stringify([{ clientKey: site.clientKey, sharedSecret: site.sharedSecret, baseUrl: site.baseUrl }]),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const url = await new Promise<string>((resolve) =>
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        const match = /Baseline listening on (\S+)/.exec(line);
        if (match) resolve(match[1]);
      }),
    );
    return { child, url };
  };
  const baseline = await startBaseline('dynamodb');
  const baselineInMemory = await startBaseline('memory');
  const client = new RelayClient(relay.url);
  try {
    const install = await client.install(site.installRequest({ relayBaseUrl: relay.url }));
    if (install.status !== 204) throw new Error(`install failed: ${install.status}`);
    const results: Array<{ sizeMiB: number; ms: Record<PathName, number>; iqr: Record<PathName, number> }> = [];
    const throughBaseline = async (url: string, name: string, bytes: Buffer) => {
      const { body, contentType } = multipart(name, bytes);
      const authorization = `JWT ${site.contextToken({ accountId: 'bench-user' })}`;
      const started = performance.now();
      const response = await fetch(`${url}/upload?pageId=${PAGE}`, { method: 'POST', headers: { authorization, 'content-type': contentType }, body: new Uint8Array(body) });
      const text = await response.text();
      const ms = performance.now() - started;
      if (response.status !== 200) throw new Error(`baseline upload failed: ${response.status} ${text}`);
      return ms;
    };
    let counter = 0;
    for (const size of [1 * MiB, 4 * MiB]) {
      const times: Record<PathName, number[]> = { relay: [], baseline: [], baselineInMemory: [], straight: [] };
      for (let run = 0; run < RUNS + 1; run += 1) {
        const bytes = randomBytes(size);
        counter += 1;
        const paths: Record<PathName, () => Promise<number>> = {
          async relay() {
            const name = `relay-${counter}.bin`;
            const { body, contentType } = multipart(name, bytes);
            const ticket = await client.ticket(site.contextToken({ accountId: 'bench-user' }), PAGE, [{ name, size }]);
            const started = performance.now();
            const response = await client.uploadRaw(ticket, body, contentType);
            const ms = performance.now() - started;
            if (response.status !== 200) throw new Error(`relay upload failed: ${response.status} ${await response.text()}`);
            return ms;
          },
          baseline: () => throughBaseline(baseline.url, `baseline-${counter}.bin`, bytes),
          baselineInMemory: () => throughBaseline(baselineInMemory.url, `baseline-memory-${counter}.bin`, bytes),
          straight: () => postStraight(site, PAGE, multipart(`straight-${counter}.bin`, bytes)),
        };
        // Rotate the order so that no path always meets a busier stand-in; round 0 warms up and is not counted.
        const order: PathName[] = (['relay', 'baseline', 'baselineInMemory', 'straight'] as PathName[]).map((_, i, all) => all[(i + run) % all.length]);
        for (const name of order) {
          const ms = await paths[name]();
          if (run > 0) times[name].push(ms);
        }
        for (const pageId of [PAGE]) {
          site.removePage(pageId);
          site.addPage(pageId);
        }
      }
      if (process.env.BENCH_VERBOSE) process.stderr.write(`${size / MiB} MiB samples: ${JSON.stringify(Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.map((ms) => Math.round(ms))])))}\n`);
      results.push({
        sizeMiB: size / MiB,
        ms: { relay: median(times.relay), baseline: median(times.baseline), baselineInMemory: median(times.baselineInMemory), straight: median(times.straight) },
        iqr: {
          relay: interquartile(times.relay),
          baseline: interquartile(times.baseline),
          baselineInMemory: interquartile(times.baselineInMemory),
          straight: interquartile(times.straight),
        },
      });
    }
    return results;
  } finally {
    baseline.child.stdin?.end();
    baselineInMemory.child.stdin?.end();
    await relay.stop();
    await standIn.close();
  }
}

interface WorkerResult {
  count: number;
  baselineBytes: number;
  peakBytes: number;
  eventsBytes?: number;
}

function runWorker(server: 'relay' | 'baseline', mode: 'single' | 'concurrent', bundleDir: string): WorkerResult {
  const script = path.join(__dirname, 'baselines', `${server}-memory-worker.ts`);
  const run = spawnSync(process.execPath, [TSX, script], {
    env: { ...process.env, BENCH_MODE: mode, BENCH_BUNDLE_DIR: bundleDir, POWERTOOLS_LOG_LEVEL: 'WARN' },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const line = run.stdout.split('\n').find((l) => l.startsWith(`{"${server}"`));
  if (run.status !== 0 || !line) throw new Error(`${server} memory worker failed (${run.status}):\n${run.stderr}`);
  return (JSON.parse(line) as Record<string, WorkerResult>)[server];
}

async function main(): Promise<void> {
  const latency = await measureLatency();

  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'bench-bundles-'));
  const memory: Record<'relay' | 'baseline', { single: WorkerResult[]; concurrent: WorkerResult[] }> = {
    relay: { single: [], concurrent: [] },
    baseline: { single: [], concurrent: [] },
  };
  try {
    await buildHandlers(bundleDir);
    for (let run = 0; run < MEMORY_RUNS; run += 1) {
      for (const server of run % 2 ? (['baseline', 'relay'] as const) : (['relay', 'baseline'] as const)) memory[server].single.push(runWorker(server, 'single', bundleDir));
    }
    for (const server of ['relay', 'baseline'] as const) memory[server].concurrent.push(runWorker(server, 'concurrent', bundleDir));
  } finally {
    rmSync(bundleDir, { recursive: true, force: true });
  }

  const growth = (r: WorkerResult) => (r.peakBytes - r.baselineBytes) / MiB;
  const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

  process.stdout.write(`\nAdded latency, stand-in link ${(LINK_BYTES_PER_SECOND * 8) / 1e6} Mbit/s, median of ${RUNS} rotating rounds (after one warm-up)\n`);
  process.stdout.write(
    `${table(
      latency.map(({ sizeMiB, ms, iqr }) => ({
        file: `${sizeMiB} MiB`,
        'straight to Confluence': formatMs(ms.straight),
        'through the relay': formatMs(ms.relay),
        'through the baseline': formatMs(ms.baseline),
        'relay added': formatMs(ms.relay - ms.straight),
        'baseline added': formatMs(ms.baseline - ms.straight),
        'baseline added, secrets in memory': formatMs(ms.baselineInMemory - ms.straight),
        'spread (IQR) relay / baseline / straight': `${iqr.relay.toFixed(1)} / ${iqr.baseline.toFixed(1)} / ${iqr.straight.toFixed(1)} ms`,
      })),
    )}\n`,
  );

  process.stdout.write(`\nPeak RSS growth, one fresh process per measurement, RSS sampled every 1 ms (4 MiB: ${MEMORY_RUNS} processes per server)\n`);
  const memoryRows = (['relay', 'baseline'] as const).map((server) => {
    const single = memory[server].single.map(growth);
    const concurrent = memory[server].concurrent[0];
    return {
      server: server === 'relay' ? 'relay (uploads bundle, API Gateway event)' : 'baseline (Express + multer + form-data)',
      '4 MiB: growth (median)': `${median(single).toFixed(1)} MiB`,
      '4 MiB: growth (each)': single.map((g) => g.toFixed(1)).join(' / '),
      'x file': (median(single) / 4).toFixed(2),
      'process RSS before': mib(median(memory[server].single.map((r) => r.baselineBytes))),
      'event held by the runtime': server === 'relay' ? mib(median(memory[server].single.map((r) => r.eventsBytes ?? 0))) : '–',
      '20 x 4 MiB: growth': `${growth(concurrent).toFixed(1)} MiB`,
      '20 x 4 MiB: peak RSS': mib(concurrent.peakBytes),
    };
  });
  process.stdout.write(`${table(memoryRows)}\n`);

  const relayMemory = median(memory.relay.single.map(growth));
  const baselineMemory = median(memory.baseline.single.map(growth));
  const ratioRows = [
    ...latency.map(({ sizeMiB, ms }) => {
      const relayAdded = ms.relay - ms.straight;
      const baselineAdded = ms.baseline - ms.straight;
      return {
        metric: `added latency, ${sizeMiB} MiB`,
        relay: formatMs(relayAdded),
        baseline: formatMs(baselineAdded),
        'relay / baseline': (relayAdded / baselineAdded).toFixed(2),
        target: '<= 1.00',
        verdict: relayAdded <= baselineAdded ? 'PASS' : 'FAIL',
      };
    }),
    {
      metric: 'peak RSS growth per 4 MiB upload',
      relay: `${relayMemory.toFixed(1)} MiB`,
      baseline: `${baselineMemory.toFixed(1)} MiB`,
      'relay / baseline': (relayMemory / baselineMemory).toFixed(2),
      target: '<= 0.50',
      verdict: relayMemory <= 0.5 * baselineMemory ? 'PASS' : 'FAIL',
    },
    {
      metric: 'RSS growth, 20 concurrent 4 MiB uploads',
      relay: `${growth(memory.relay.concurrent[0]).toFixed(1)} MiB`,
      baseline: `${growth(memory.baseline.concurrent[0]).toFixed(1)} MiB`,
      'relay / baseline': (growth(memory.relay.concurrent[0]) / growth(memory.baseline.concurrent[0])).toFixed(2),
      target: '(reported)',
      verdict: '',
    },
  ];
  process.stdout.write(`\nRelay vs baseline (acceptance: issue 8)\n${table(ratioRows)}\n`);
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
