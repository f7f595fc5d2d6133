/**
 * `npm run bench:load` — many concurrent uploads through `npm run relay` (a
 * child process: the local API Gateway, the Lambda bundles, dynalite and
 * s3rver in one process) into the Confluence stand-in (in this process), on
 * loopback only, for a fixed number of uploads and a bounded time.
 *
 * Each upload is what a browser does: a ticket (POST /tickets with a context
 * JWT), then the multipart upload (POST /uploads), from one of several
 * tenants (stand-in sites, each installed through the signed lifecycle
 * callback) and several users per tenant, acting as the user (OAuth token
 * endpoint of the stand-in). Sizes are log-uniform between 64 KiB and 4 MiB.
 * An upload counts as an error unless it answers 200 and the stand-in holds
 * exactly that attachment with the right bytes.
 *
 * Prints throughput, latency percentiles, errors, and the relay process's
 * RSS (VmRSS from /proc) at start, middle and end: a steady RSS (end within
 * 15% of middle) means no leak.
 *
 * BENCH_LOAD_UPLOADS (400), BENCH_LOAD_CONCURRENCY (16), BENCH_LOAD_TENANTS
 * (4), BENCH_LOAD_MAX_SECONDS (300), BENCH_LINK_MBIT (0 = bare loopback).
 */
import { createHash, randomBytes } from 'node:crypto';
import { startConfluenceStandIn } from '../test/confluence-stand-in/stand-in';
import type { Site } from '../test/confluence-stand-in/types';
import { RelayClient } from '../test/helpers/relay-client';
import { muteSdkNodeVersionWarning } from '../functions/src/local/quiet';
import { rssOf, startRelayChild } from './relay-child';
import { MiB, percentile, table } from './stats';

muteSdkNodeVersionWarning();

const UPLOADS = Number(process.env.BENCH_LOAD_UPLOADS ?? 400);
const CONCURRENCY = Number(process.env.BENCH_LOAD_CONCURRENCY ?? 16);
const TENANTS = Number(process.env.BENCH_LOAD_TENANTS ?? 4);
const USERS_PER_TENANT = 4;
const MAX_SECONDS = Number(process.env.BENCH_LOAD_MAX_SECONDS ?? 300);
const LINK_MBIT = Number(process.env.BENCH_LINK_MBIT ?? 0);
const MIN_BYTES = 64 * 1024;
const MAX_BYTES = 4 * MiB;
const REQUEST_TIMEOUT_MS = 35_000;

/** A small seeded PRNG (mulberry32), so every run uploads the same sizes in the same order. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Outcome {
  ok: boolean;
  error?: string;
  bytes: number;
  ticketMs: number;
  uploadMs: number;
}

async function main(): Promise<void> {
  const standIn = await startConfluenceStandIn({ bytesPerSecond: LINK_MBIT ? (LINK_MBIT * 1e6) / 8 : undefined });
  const relay = await startRelayChild({
    CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
    OAUTH_TOKEN_URL: standIn.oauthTokenUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    POWERTOOLS_LOG_LEVEL: 'WARN',
  });
  const client = new RelayClient(relay.url);
  const sites: Site[] = [];
  const random = prng(8);
  // One pool of random bytes; each upload takes a slice at a random offset (and is checked by its hash).
  const pool = randomBytes(2 * MAX_BYTES);
  const rss: Record<string, number> = {};
  let peakRss = 0;
  const sampler = setInterval(() => {
    try {
      peakRss = Math.max(peakRss, rssOf(relay.pid));
    } catch {
      // the relay is stopping
    }
  }, 100);

  try {
    for (let t = 0; t < TENANTS; t += 1) {
      const site = standIn.site(`tenant-${t}`);
      const installed = await client.install(site.installRequest({ relayBaseUrl: relay.url }));
      if (installed.status !== 204) throw new Error(`install of tenant-${t} failed: ${installed.status}`);
      sites.push(site);
    }

    // Plan every upload up front (tenant, user, size, bytes).
    const plan = Array.from({ length: UPLOADS }, (_, i) => {
      const size = Math.round(MIN_BYTES * (MAX_BYTES / MIN_BYTES) ** random());
      const offset = Math.floor(random() * (pool.length - size));
      return { i, site: sites[i % sites.length], user: `user-${Math.floor(random() * USERS_PER_TENANT)}`, size, offset };
    });

    const one = async ({ i, site, user, size, offset }: (typeof plan)[number]): Promise<Outcome> => {
      const page = String(100_000 + i);
      site.addPage(page);
      const bytes = pool.subarray(offset, offset + size);
      const name = `load-${i}.bin`;
      let started = performance.now();
      try {
        const issued = await fetch(`${relay.url}/tickets`, {
          method: 'POST',
          headers: { authorization: `JWT ${site.contextToken({ accountId: user })}`, 'content-type': 'application/json' },
          body: JSON.stringify({ contentId: page, files: [{ name, size, type: 'application/octet-stream' }] }),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        const ticketBody = (await issued.json()) as { ticket?: string };
        const ticketMs = performance.now() - started;
        if (issued.status !== 201 || !ticketBody.ticket) return { ok: false, error: `ticket ${issued.status}`, bytes: 0, ticketMs, uploadMs: 0 };
        started = performance.now();
        const form = new FormData();
        form.append('file', new Blob([bytes], { type: 'application/octet-stream' }), name);
        const response = await fetch(`${relay.url}/uploads`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ticketBody.ticket}` },
          body: form,
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        const answer = (await response.json()) as { attachments?: Array<{ id: string }>; error?: { code: string } };
        const uploadMs = performance.now() - started;
        if (response.status !== 200) return { ok: false, error: `upload ${response.status} ${answer.error?.code}`, bytes: 0, ticketMs, uploadMs };
        const stored = site.attachments(page);
        const right = stored.length === 1 && stored[0].id === answer.attachments?.[0]?.id && stored[0].sha256 === createHash('sha256').update(bytes).digest('hex');
        return right ? { ok: true, bytes: size, ticketMs, uploadMs } : { ok: false, error: 'wrong attachment at the stand-in', bytes: 0, ticketMs, uploadMs };
      } catch (error) {
        return { ok: false, error: (error as Error).name, bytes: 0, ticketMs: 0, uploadMs: performance.now() - started };
      } finally {
        // The stand-in keeps attachments in memory: drop the page once checked.
        site.removePage(page);
      }
    };

    // A few uploads warm the bundles and connections; RSS "start" is read after them.
    for (const warm of plan.slice(0, 2)) await one({ ...warm, i: UPLOADS + warm.i });
    rss.start = rssOf(relay.pid);

    const outcomes: Outcome[] = [];
    const deadline = Date.now() + MAX_SECONDS * 1000;
    const began = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < plan.length && Date.now() < deadline) {
          const item = plan[next];
          next += 1;
          outcomes.push(await one(item));
          if (outcomes.length === Math.floor(UPLOADS / 2)) rss.middle = rssOf(relay.pid);
        }
      }),
    );
    const elapsedS = (performance.now() - began) / 1000;
    // Let the last answers settle (log writes, timers), then read the end.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    rss.end = rssOf(relay.pid);

    const ok = outcomes.filter((o) => o.ok);
    const errors = outcomes.filter((o) => !o.ok);
    const uploadMs = ok.map((o) => o.uploadMs);
    const ticketMs = ok.map((o) => o.ticketMs);
    const bytes = ok.reduce((sum, o) => sum + o.bytes, 0);
    const endVsMiddle = (rss.end - rss.middle) / rss.middle;
    const mib = (value: number) => `${(value / MiB).toFixed(1)} MiB`;

    process.stdout.write(
      `\nLoad: ${outcomes.length} of ${UPLOADS} uploads (64 KiB–4 MiB, log-uniform, ${(bytes / MiB).toFixed(0)} MiB in all), concurrency ${CONCURRENCY}, ${TENANTS} tenants × ${USERS_PER_TENANT} users, acting as the user, ${LINK_MBIT ? `${LINK_MBIT} Mbit/s link` : 'bare loopback'}, Node ${process.version}\n`,
    );
    process.stdout.write(
      `${table([
        {
          uploads: outcomes.length,
          errors: errors.length,
          'wall time': `${elapsedS.toFixed(1)} s`,
          throughput: `${(ok.length / elapsedS).toFixed(1)} uploads/s, ${(bytes / MiB / elapsedS).toFixed(1)} MiB/s`,
          'upload p50': `${percentile(uploadMs, 50).toFixed(0)} ms`,
          'upload p95': `${percentile(uploadMs, 95).toFixed(0)} ms`,
          'upload p99': `${percentile(uploadMs, 99).toFixed(0)} ms`,
          'ticket p50 / p99': `${percentile(ticketMs, 50).toFixed(0)} / ${percentile(ticketMs, 99).toFixed(0)} ms`,
        },
      ])}\n`,
    );
    process.stdout.write(
      `\nRelay process RSS (VmRSS, pid ${relay.pid})\n${table([
        { start: mib(rss.start), middle: mib(rss.middle), end: mib(rss.end), peak: mib(peakRss), 'end vs middle': `${(endVsMiddle * 100).toFixed(1)}%` },
      ])}\n`,
    );
    const errorKinds = new Map<string, number>();
    for (const error of errors) errorKinds.set(error.error ?? '?', (errorKinds.get(error.error ?? '?') ?? 0) + 1);
    if (errorKinds.size) process.stdout.write(`\nErrors: ${[...errorKinds].map(([kind, n]) => `${kind} × ${n}`).join(', ')}\n`);
    const pass = errors.length === 0 && outcomes.length === UPLOADS && Math.abs(endVsMiddle) <= 0.15;
    process.stdout.write(`\nAcceptance (zero errors, all ${UPLOADS} done, end RSS within 15% of middle): ${pass ? 'PASS' : 'FAIL'}\n`);
  } finally {
    clearInterval(sampler);
    await relay.stop();
    await standIn.close();
  }
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
