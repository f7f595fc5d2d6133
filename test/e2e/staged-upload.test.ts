import { createHash, randomBytes } from 'node:crypto';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { startConfluenceStandIn } from '../confluence-stand-in/stand-in';
import type { ConfluenceStandIn, Site } from '../confluence-stand-in/types';
import { S3RVER_CREDENTIALS, startS3rver } from '../../functions/src/local/s3-local';
import { MAX_ATTEMPTS } from '../../functions/src/uploads/relay-file';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { RelayClient } from '../helpers/relay-client';

/**
 * Large files through the staging bucket (contract "Staged upload"): browser
 * → presigned POST to S3 (s3rver) → /uploads/complete → asynchronous relay →
 * Confluence stand-in, with the bucket checked empty after every test.
 */
const PAGE = '4001';
const USER = 'account-carol';
const BUCKET = 'relay-e2e-staging';
const MiB = 1024 * 1024;

let standIn: ConfluenceStandIn;
let site: Site;
let s3: Awaited<ReturnType<typeof startS3rver>>;
let s3Client: S3Client;
let relay: RelayProcess;
let client: RelayClient;
let counter = 0;

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const stored = (name: string) => site.attachments(PAGE).filter((a) => a.title === name);

interface StagedEntry {
  name: string;
  mode: 'staged' | 'direct';
  post: { url: string; fields: Record<string, string> };
  completeUrl: string;
}

async function stagedTicket(files: Array<{ name: string; size: number; type: string }>) {
  const response = await client.requestTicket(`JWT ${site.contextToken({ accountId: USER })}`, { contentId: PAGE, files });
  const body = (await response.json()) as { ticket: string; uploads: StagedEntry[] };
  expect(response.status).toBe(201);
  return body;
}

/** What the browser does with a `staged` entry: a multipart POST of the policy fields, then the file. */
async function postToBucket(entry: StagedEntry, bytes: Buffer, typeOverride?: string): Promise<number> {
  const form = new FormData();
  for (const [name, value] of Object.entries(entry.post.fields)) {
    form.append(name, name === 'Content-Type' && typeOverride ? typeOverride : value);
  }
  form.append('file', new Blob([new Uint8Array(bytes)]), entry.name);
  const response = await fetch(entry.post.url, { method: 'POST', body: form });
  await response.arrayBuffer();
  return response.status;
}

async function complete(ticket: string, entry: StagedEntry) {
  return fetch(entry.completeUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${ticket}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: entry.name }),
  });
}

/** Completes, then follows `statusUrl` until the final answer. */
async function completeAndWait(ticket: string, entry: StagedEntry): Promise<{ status: number; body: Record<string, any>; firstStatus: number }> {
  let response = await complete(ticket, entry);
  let body = (await response.json()) as Record<string, any>;
  const firstStatus = response.status;
  if (firstStatus === 202) {
    expect(body).toEqual({ status: 'relaying', statusUrl: `${relay.url}/uploads/status?name=${encodeURIComponent(entry.name)}` });
  }
  for (let i = 0; response.status === 202 && i < 600; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    response = await fetch(body.statusUrl, { headers: { authorization: `Bearer ${ticket}` } });
    body = (await response.json()) as Record<string, any>;
  }
  return { status: response.status, body, firstStatus };
}

async function stagedUpload(size: number, type = 'application/zip') {
  counter += 1;
  const bytes = randomBytes(size);
  const name = `big-${counter}.zip`;
  const { ticket, uploads } = await stagedTicket([{ name, size, type }]);
  expect(uploads[0].mode).toBe('staged');
  expect(await postToBucket(uploads[0], bytes)).toBeLessThan(300);
  return { ticket, entry: uploads[0], bytes, name };
}

async function bucketKeys(): Promise<string[]> {
  const listing = await s3Client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
  return (listing.Contents ?? []).map((object) => object.Key as string);
}

beforeAll(async () => {
  standIn = await startConfluenceStandIn({ appKey: 'confluence-upload-relay' });
  site = standIn.site();
  site.addPage(PAGE);
  s3 = await startS3rver();
  s3Client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: S3RVER_CREDENTIALS });
  relay = await startRelayProcess({
    CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
    OAUTH_TOKEN_URL: standIn.oauthTokenUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    S3_ENDPOINT: s3.endpoint,
    STAGING_BUCKET: BUCKET,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    DIRECT_MAX_BYTES: String(1 * MiB),
    MAX_FILE_BYTES: String(200 * MiB),
    UPSTREAM_TIMEOUT_MS: '120000',
    // Store and bucket calls give up after 2 s without progress (a Confluence stall must not count as one).
    API_CALL_TIMEOUT_MS: '2000',
    COMPLETE_WAIT_MS: '1500',
    // Lambda may deliver an asynchronous event more than once: here every one is delivered twice.
    LOCAL_ASYNC_DELIVERIES: '2',
  });
  client = new RelayClient(relay.url);
  expect((await client.install(site.installRequest({ relayBaseUrl: relay.url }))).status).toBe(204);
}, 60_000);

afterEach(async () => {
  // The staging bucket is empty after every test, success or failure.
  expect(await bucketKeys()).toEqual([]);
});

afterAll(async () => {
  await relay?.stop();
  await s3?.close();
  await standIn?.close();
});

describe('staged uploads', () => {
  it('routes files over DIRECT_MAX_BYTES to a presigned POST pinned to one key, size, type and encryption', async () => {
    const { uploads } = await stagedTicket([
      { name: 'small.png', size: 1000, type: 'image/png' },
      { name: 'large.zip', size: 2 * MiB, type: 'application/zip' },
    ]);
    expect(uploads[0]).toEqual({ name: 'small.png', mode: 'direct', url: `${relay.url}/uploads` });
    const staged = uploads[1];
    expect(staged).toMatchObject({ name: 'large.zip', mode: 'staged', completeUrl: `${relay.url}/uploads/complete` });
    expect(staged.post.url.startsWith(s3.endpoint)).toBe(true);
    expect(staged.post.fields.key).toMatch(/^staging\/[0-9a-f]{16}\/[0-9a-f]{32}\/[0-9a-f]{32}$/);
    expect(staged.post.fields.key).not.toContain('large');
    const policy = JSON.parse(Buffer.from(staged.post.fields.Policy, 'base64').toString('utf8'));
    expect(policy.conditions).toEqual(
      expect.arrayContaining([
        ['content-length-range', 2 * MiB, 2 * MiB],
        ['eq', '$Content-Type', 'application/zip'],
        { 'x-amz-server-side-encryption': 'AES256' },
        { key: staged.post.fields.key },
      ]),
    );
    const expiresIn = Date.parse(policy.expiration) - Date.now();
    expect(expiresIn).toBeLessThanOrEqual(300_000);
    expect(expiresIn).toBeGreaterThan(250_000);
  });

  it.each([
    ['12 MiB', 12 * MiB],
    ['150 MiB', 150 * MiB],
  ])('relays %s byte-identical and deletes the object', async (_label, size) => {
    const { ticket, entry, bytes, name } = await stagedUpload(size);
    const { status, body } = await completeAndWait(ticket, entry);
    expect({ status, body }).toMatchObject({ status: 200, body: { attachments: [{ name, fileSize: size, version: 1 }] } });
    expect(stored(name)).toEqual([expect.objectContaining({ sha256: sha256(bytes), fileSize: size, createdBy: USER })]);
  }, 180_000);

  it('answers 200 within the request when the relay is quick', async () => {
    const { ticket, entry, name } = await stagedUpload(Math.floor(1.5 * MiB));
    const { firstStatus, body } = await completeAndWait(ticket, entry);
    expect(firstStatus).toBe(200);
    expect(body.attachments[0]).toMatchObject({ name, fileSize: Math.floor(1.5 * MiB) });
  });

  it('answers 202 with a statusUrl while relaying takes longer, then the result there', async () => {
    const { ticket, entry, name, bytes } = await stagedUpload(2 * MiB);
    standIn.failNext({ method: 'PUT', pathIncludes: '/child/attachment', passThrough: true, delayMs: 3000 });
    const { firstStatus, status, body } = await completeAndWait(ticket, entry);
    expect(firstStatus).toBe(202);
    expect(status).toBe(200);
    expect(body.attachments[0]).toMatchObject({ name, fileSize: bytes.length });
    expect(stored(name)).toEqual([expect.objectContaining({ sha256: sha256(bytes) })]);
  });

  it('answers a replayed completion with the recorded result and creates nothing new', async () => {
    const { ticket, entry, name } = await stagedUpload(2 * MiB);
    const first = await completeAndWait(ticket, entry);
    expect(first.status).toBe(200);
    const replay = await completeAndWait(ticket, entry);
    expect(replay.firstStatus).toBe(200);
    expect(replay.body).toEqual(first.body);
    expect(stored(name)).toEqual([expect.objectContaining({ version: 1 })]);
  });

  it('relays once when Lambda delivers the same event twice: the second delivery leaves the file to the first', async () => {
    const { ticket, entry, name, bytes } = await stagedUpload(3 * MiB);
    const before = relay.logLines().length;
    const { status } = await completeAndWait(ticket, entry);
    expect(status).toBe(200);
    expect(stored(name)).toEqual([expect.objectContaining({ version: 1, sha256: sha256(bytes) })]);
    // Both deliveries ran (LOCAL_ASYNC_DELIVERIES=2); one relayed, one stood down.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const codes = relay
      .logLines()
      .slice(before)
      .filter((line) => line.route === 'staged-relay')
      .map((line) => line.code);
    expect(codes.sort()).toEqual(['duplicate_delivery', 'ok']);
  });

  it('rides out Confluence stalling mid-upload for longer than a bucket call may take, in one attempt', async () => {
    const { ticket, entry, name, bytes } = await stagedUpload(12 * MiB);
    const uploads = () => standIn.requests.filter((r) => r.method === 'PUT' && r.path.endsWith(`/content/${PAGE}/child/attachment`));
    const before = uploads().length;
    // Stops reading for 3 s after 2 MiB: the relay stops reading S3 meanwhile (backpressure), longer than API_CALL_TIMEOUT_MS.
    standIn.failNext({ method: 'PUT', pathIncludes: '/child/attachment', passThrough: true, stallAfterBytes: 2 * MiB, stallMs: 3000 });
    const { status } = await completeAndWait(ticket, entry);
    expect(status).toBe(200);
    expect(stored(name)).toEqual([expect.objectContaining({ version: 1, sha256: sha256(bytes) })]);
    expect(uploads().slice(before).map((r) => r.status)).toEqual([200]);
  }, 60_000);

  it.each<[string, number, string | undefined, number, string]>([
    ['larger than declared', 2 * MiB + 1, undefined, 413, 'larger_than_declared'],
    ['smaller than declared', 2 * MiB - 1, undefined, 400, 'size_mismatch'],
    ['of another type', 2 * MiB, 'text/html', 400, 'type_mismatch'],
  ])('refuses and deletes an object %s', async (_label, actualSize, type, status, code) => {
    counter += 1;
    const name = `dishonest-${counter}.zip`;
    const { ticket, uploads } = await stagedTicket([{ name, size: 2 * MiB, type: 'application/zip' }]);
    // s3rver does not enforce POST policies (real S3 does): the relay must not rely on them.
    expect(await postToBucket(uploads[0], randomBytes(actualSize), type)).toBeLessThan(300);
    const response = await complete(ticket, uploads[0]);
    expect(response.status).toBe(status);
    expect(((await response.json()) as Record<string, any>).error.code).toBe(code);
    expect(stored(name)).toEqual([]);
  });

  it('answers 400 for a completion of a file never uploaded, and 404 for its status', async () => {
    const { ticket, uploads } = await stagedTicket([{ name: 'never.zip', size: 2 * MiB, type: 'application/zip' }]);
    const response = await complete(ticket, uploads[0]);
    expect(response.status).toBe(400);
    expect(((await response.json()) as Record<string, any>).error.code).toBe('not_uploaded');
    const status = await fetch(`${relay.url}/uploads/status?name=never.zip`, { headers: { authorization: `Bearer ${ticket}` } });
    expect(status.status).toBe(404);
  });

  it('refuses to complete a direct file (400) and any bad ticket (401)', async () => {
    const { ticket, uploads } = await stagedTicket([{ name: 'tiny.txt', size: 10, type: 'text/plain' }]);
    const notStaged = await complete(ticket, { ...uploads[0], completeUrl: `${relay.url}/uploads/complete` } as StagedEntry);
    expect(notStaged.status).toBe(400);
    const forged = await complete('rt1.eA.' + 'x'.repeat(43), { name: 'tiny.txt', completeUrl: `${relay.url}/uploads/complete` } as StagedEntry);
    expect(forged.status).toBe(401);
  });

  it('leaves no object and no partial attachment when Confluence fails mid-stream', async () => {
    const { ticket, entry, name } = await stagedUpload(3 * MiB);
    standIn.failNext({ method: 'PUT', pathIncludes: '/child/attachment', resetAfterBytes: 256 * 1024, times: MAX_ATTEMPTS });
    const { status, body } = await completeAndWait(ticket, entry);
    expect(status).toBe(502);
    expect(body.error.code).toBe('upstream_error');
    expect(stored(name)).toEqual([]);
  });
});
