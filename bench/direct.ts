/**
 * `npm run bench:direct` — what the relay adds to a direct upload.
 *
 * Time: the Confluence stand-in reads request bodies at a simulated 100 Mbit/s
 * (a WAN to Confluence). For 1 MiB and 4 MiB files, runs alternate between
 * (a) POST /uploads through `npm run relay` (local API Gateway + the Lambda
 * bundle + dynalite) and (b) posting the same multipart body straight to the
 * stand-in as the app. Prints median(a) / median(b) and the added ms.
 *
 * Memory: runs bench/direct-memory.ts in a fresh process (see there).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { startConfluenceStandIn } from '../test/confluence-stand-in/stand-in';
import { startRelayProcess } from '../test/helpers/relay-process';
import { RelayClient } from '../test/helpers/relay-client';
import { MiB, formatMs, median, table } from './stats';
import { multipart, postStraight } from './requests';
import { muteSdkNodeVersionWarning } from '../functions/src/local/quiet';

muteSdkNodeVersionWarning();

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const LINK_BYTES_PER_SECOND = 12_500_000; // 100 Mbit/s
const PAGE = '1001';

async function main(): Promise<void> {
  const standIn = await startConfluenceStandIn({ bytesPerSecond: LINK_BYTES_PER_SECOND });
  const site = standIn.site();
  site.addPage(PAGE);
  const relay = await startRelayProcess({
    CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
    OAUTH_TOKEN_URL: standIn.oauthTokenUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    ON_NAME_CONFLICT: 'fail',
  });
  const client = new RelayClient(relay.url);
  try {
    const install = await client.install(site.installRequest({ relayBaseUrl: relay.url }));
    if (install.status !== 204) throw new Error(`install failed: ${install.status}`);

    const rows: Array<Record<string, string | number>> = [];
    let counter = 0;
    for (const size of [1 * MiB, 4 * MiB]) {
      const relayTimes: number[] = [];
      const directTimes: number[] = [];
      for (let run = 0; run < RUNS + 1; run += 1) {
        // (a) through the relay; the ticket is fetched first and not timed.
        const relayName = `relay-${size}-${(counter += 1)}.bin`;
        const bytes = randomBytes(size);
        const { body, contentType } = multipart(relayName, bytes, { minorEdit: 'true' });
        const ticket = await client.ticket(site.contextToken({ accountId: 'bench-user' }), PAGE, [{ name: relayName, size }]);
        const started = performance.now();
        const relayed = await client.uploadRaw(ticket, body, contentType);
        const relayMs = performance.now() - started;
        if (relayed.status !== 200) throw new Error(`relay upload failed: ${relayed.status} ${await relayed.text()}`);

        // (b) the same bytes straight to the stand-in, as the app.
        const directName = `direct-${size}-${counter}.bin`;
        const directMs = await postStraight(site, PAGE, multipart(directName, bytes, { minorEdit: 'true' }));
        // The first pair warms both paths (bundle load, connections) and is not counted.
        if (run > 0) {
          relayTimes.push(relayMs);
          directTimes.push(directMs);
        }
      }
      const relayMedian = median(relayTimes);
      const directMedian = median(directTimes);
      rows.push({
        file: `${size / MiB} MiB`,
        runs: relayTimes.length,
        'direct to Confluence (median)': formatMs(directMedian),
        'through the relay (median)': formatMs(relayMedian),
        'added': formatMs(relayMedian - directMedian),
        'time ratio': (relayMedian / directMedian).toFixed(3),
      });
    }
    process.stdout.write(`\nDirect upload time, stand-in link ${(LINK_BYTES_PER_SECOND * 8) / 1e6} Mbit/s, ${RUNS} runs each (alternating)\n`);
    process.stdout.write(`${table(rows)}\n`);
  } finally {
    await relay.stop();
    await standIn.close();
  }

  const memory = spawnSync(process.execPath, [path.join(__dirname, '..', 'node_modules', 'tsx', 'dist', 'cli.mjs'), path.join(__dirname, 'direct-memory.ts')], {
    stdio: 'inherit',
    env: process.env,
  });
  if (memory.status !== 0) throw new Error('memory benchmark failed');
}

main().catch((error: Error) => {
  process.stderr.write(`${error.stack ?? error.message}\n`);
  process.exit(1);
});
