import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { startConfluenceStandIn } from '../confluence-stand-in/stand-in';
import type { ConfluenceStandIn, Site } from '../confluence-stand-in/types';
import { startDynalite } from '../../functions/src/local/dynamodb-local';
import { S3RVER_CREDENTIALS, startS3rver } from '../../functions/src/local/s3-local';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { RelayClient } from '../helpers/relay-client';
import { rsaKeyPair } from '../helpers/jwt';
import { startFaultProxy, startKeyServer, type Fault, type FaultProxy, type FaultRule } from './fault-proxy';
import { EXPECTED, FAULTS, STEPS, type FaultName, type Outcome, type StepName } from './matrix';

/**
 * The fault matrix (docs/reliability.md): every step of an upload × every
 * way the system behind it can fail, seen from the browser and counted at the
 * Confluence stand-in. Each cell gets its own Confluence site (tenant), so its
 * faults touch nothing else; the fault persists for the whole first attempt
 * (it outlasts every retry), then is lifted and the browser tries again.
 *
 * Invariants checked in every cell: a 200 always means exactly one attachment
 * with the right bytes (zero lost); never a second attachment or version
 * (zero duplicated); and what the browser saw is the documented outcome.
 *
 * DynamoDB (dynalite), S3 (s3rver), the install-key CDN and the tenants'
 * Confluence are reached through fault-injecting proxies (fault-proxy.ts);
 * the OAuth token endpoint through the stand-in's failNext, because its
 * assertion names the stand-in's own origin.
 */
const API_CALL_TIMEOUT_MS = 1000;
const UPSTREAM_TIMEOUT_MS = 2000;
const DIRECT_MAX_BYTES = 64 * 1024;
const DIRECT_FILE_BYTES = 4 * 1024;
const STAGED_FILE_BYTES = 100 * 1024;
const BUCKET = 'fault-staging';
const TABLE = 'fault-matrix';
const PAGE = '7001';
/** Cells run this many at a time (their faults are scoped to their own tenant). */
const CONCURRENCY = 3;

let standIn: ConfluenceStandIn;
let dynamo: Awaited<ReturnType<typeof startDynalite>>;
let s3: Awaited<ReturnType<typeof startS3rver>>;
let keys: Awaited<ReturnType<typeof startKeyServer>>;
let dynamoProxy: FaultProxy;
let s3Proxy: FaultProxy;
let keyProxy: FaultProxy;
let confluenceProxy: FaultProxy;
let relay: RelayProcess;
let client: RelayClient;
let s3Client: S3Client;
const installKey = rsaKeyPair();
const INSTALL_KID = 'fault-matrix-key';
const results: Array<{ step: StepName; fault: FaultName; outcome: Outcome }> = [];

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const tenantPrefix = (tenantId: string) => `staging/${createHash('sha256').update(tenantId).digest('hex').slice(0, 16)}/`;

/** What each fault looks like to the SDK or client of the faulted system. */
function proxyFault(fault: FaultName, system: 'dynamodb' | 's3' | 'http'): Fault {
  if (fault === 'timeout') return { kind: 'timeout' };
  if (fault === 'reset') return { kind: 'reset' };
  if (fault === 'slow drip') return { kind: 'drip', slices: 16, overMs: 600 };
  const status = fault === '5xx' ? 500 : 429;
  if (system === 'dynamodb') {
    const type = status === 500 ? 'InternalServerError' : 'ThrottlingException';
    return {
      kind: 'status',
      status,
      headers: { 'content-type': 'application/x-amz-json-1.0' },
      body: JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message: 'injected' }),
    };
  }
  if (system === 's3') {
    const code = status === 500 ? 'InternalError' : 'SlowDown';
    return { kind: 'status', status, headers: { 'content-type': 'application/xml' }, body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected</Message></Error>` };
  }
  return { kind: 'status', status, body: JSON.stringify({ statusCode: status, message: 'injected' }) };
}

interface Cell {
  step: StepName;
  fault: FaultName;
  site: Site;
  /** Installed with the site's oauthClientId, straight to the stand-in (user uploads, token step only). */
  asUser: boolean;
  accountId: string;
  name: string;
  bytes: Buffer;
}

/** Puts the cell's fault in place; returns how to lift it. */
function injectFault(cell: Cell): () => void {
  const { step, fault, site } = cell;
  const persist = Infinity;
  const dynamoRule = (target: string, ...body: string[]): FaultRule => ({
    header: ['x-amz-target', `DynamoDB_20120810.${target}`],
    bodyIncludes: [site.clientKey, ...body],
    fault: proxyFault(fault, 'dynamodb'),
    times: persist,
  });
  const prefix = `/${BUCKET}/${tenantPrefix(site.clientKey)}`;
  const sitePath = `/sites/${site.name}/wiki/rest/api/content/${PAGE}`;
  switch (step) {
    case 'install key fetch':
      return keyProxy.add({ pathIncludes: `/${site.name}-kid`, fault: proxyFault(fault, 'http'), times: persist });
    case 'tenant lookup':
      return dynamoProxy.add(dynamoRule('GetItem', '#TENANT'));
    case 'ledger: ticket write':
      return dynamoProxy.add(dynamoRule('PutItem', '"contentId"'));
    case 'ticket read':
      return dynamoProxy.add(dynamoRule('BatchGetItem', '#TENANT'));
    case 'ledger: file claim':
      return dynamoProxy.add(dynamoRule('PutItem', '#FILE#'));
    case 'ledger: result write':
      return dynamoProxy.add(dynamoRule('UpdateItem', ':done'));
    case 'token endpoint': {
      // One token request per upload request: times 1 is the whole attempt.
      const rule =
        fault === 'timeout'
          ? { delayMs: API_CALL_TIMEOUT_MS + 1000, status: 500 }
          : fault === 'reset'
            ? { resetConnection: true }
            : fault === 'slow drip'
              ? { passThrough: true, delayMs: 400 }
              : { status: fault === '5xx' ? 500 : 429 };
      standIn.failNext({ method: 'POST', pathIncludes: '/oauth2/token', times: 1, ...rule });
      return () => undefined;
    }
    case 'permission check':
      return confluenceProxy.add({ method: 'POST', pathIncludes: `${sitePath}/permission/check`, fault: proxyFault(fault, 'http'), times: persist });
    case 'upload to Confluence':
      return confluenceProxy.add({ method: 'PUT', pathIncludes: `${sitePath}/child/attachment`, fault: proxyFault(fault, 'http'), times: persist });
    case 'staging check (HEAD)':
      return s3Proxy.add({ method: 'HEAD', pathIncludes: prefix, fault: proxyFault(fault, 's3'), times: persist });
    case 'staging read (GET)':
      return s3Proxy.add({ method: 'GET', pathIncludes: prefix, fault: proxyFault(fault, 's3'), times: persist });
    case 'staging delete':
      return s3Proxy.add({ method: 'DELETE', pathIncludes: prefix, fault: proxyFault(fault, 's3'), times: persist });
  }
}

/** The browser-visible answer: status and error code (or `ok`). */
async function answer(response: Response): Promise<{ status: number; code: string; body: Record<string, any>; requestId?: string }> {
  const text = await response.text();
  let body: Record<string, any> = {};
  try {
    body = JSON.parse(text) as Record<string, any>;
  } catch {
    // not JSON: keep the status
  }
  return { status: response.status, code: response.status < 300 ? 'ok' : String(body.error?.code ?? 'none'), body, requestId: response.headers.get('apigw-requestid') ?? undefined };
}

interface FlowState {
  ticket?: string;
  staged?: { post: { url: string; fields: Record<string, string> }; completeUrl: string };
}

async function postToBucket(cell: Cell, post: { url: string; fields: Record<string, string> }): Promise<number> {
  const form = new FormData();
  for (const [name, value] of Object.entries(post.fields)) form.append(name, value);
  form.append('file', new Blob([new Uint8Array(cell.bytes)]), cell.name);
  const response = await fetch(post.url, { method: 'POST', body: form });
  await response.arrayBuffer();
  return response.status;
}

/** What the browser does: ticket, then the direct upload or the staged one (POST to the bucket, complete, poll). */
async function browserFlow(cell: Cell, state: FlowState): Promise<{ status: number; code: string; body: Record<string, any> }> {
  const staged = STEPS[cell.step].flow === 'staged';
  if (!state.ticket) {
    const issued = await answer(
      await client.requestTicket(`JWT ${cell.site.contextToken({ accountId: cell.accountId })}`, {
        contentId: PAGE,
        files: [{ name: cell.name, size: cell.bytes.length, type: 'application/octet-stream' }],
      }),
    );
    if (issued.status !== 201) return issued;
    state.ticket = issued.body.ticket as string;
    if (staged) {
      state.staged = issued.body.uploads[0];
      const posted = await postToBucket(cell, state.staged!.post);
      if (posted >= 300) return { status: posted, code: 'bucket_post_failed', body: {} };
    }
  }
  if (!staged) return answer(await client.upload(state.ticket, [{ name: cell.name, bytes: cell.bytes }]));

  const complete = () =>
    fetch(state.staged!.completeUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${state.ticket}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: cell.name }),
    });
  let result = await answer(await complete());
  if (result.code === 'not_uploaded') {
    // The relay deleted the object after a failure: the browser puts it there again (the POST is valid until the ticket expires).
    await postToBucket(cell, state.staged!.post);
    result = await answer(await complete());
  }
  for (let i = 0; result.status === 202 && i < 150; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    result = await answer(await fetch(result.body.statusUrl, { headers: { authorization: `Bearer ${state.ticket}` } }));
  }
  return result;
}

async function stagedObjectsLeft(cell: Cell): Promise<string[]> {
  const listing = await s3Client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: tenantPrefix(cell.site.clientKey) }));
  return (listing.Contents ?? []).map((object) => object.Key as string);
}

/** The attachments of the cell's file at the stand-in, checked against "zero lost, zero duplicated". */
function attachmentsOf(cell: Cell): { count: number; versions: number; rightBytes: boolean } {
  const stored = cell.site.attachments(PAGE).filter((a) => a.title === cell.name);
  return {
    count: stored.length,
    versions: stored.reduce((sum, a) => sum + a.version, 0),
    rightBytes: stored.length === 1 && stored[0].sha256 === sha256(cell.bytes) && stored[0].fileSize === cell.bytes.length,
  };
}

async function install(cell: Cell, kid = INSTALL_KID, privateKeyPem = installKey.privateKeyPem): Promise<{ status: number; code: string }> {
  const payload = cell.asUser
    ? {}
    : // Through the Confluence proxy, as the app (the JWT-bearer assertion would name the proxy, not the site).
      { baseUrl: `${confluenceProxy.url}${cell.site.contextPath}`, oauthClientId: undefined };
  const request = cell.site.installRequest({ relayBaseUrl: relay.url, kid, privateKeyPem, payload });
  const { status, code } = await answer(await client.install(request));
  return { status, code };
}

async function runCell(step: StepName, fault: FaultName): Promise<Outcome> {
  const siteName = `${step}-${fault}`.replace(/[^A-Za-z0-9]+/g, '-');
  const site = standIn.site(siteName);
  site.addPage(PAGE);
  const staged = STEPS[step].flow === 'staged';
  const cell: Cell = {
    step,
    fault,
    site,
    asUser: step === 'token endpoint',
    accountId: `user-${siteName}`,
    name: `${siteName}.bin`,
    bytes: randomBytes(staged ? STAGED_FILE_BYTES : DIRECT_FILE_BYTES),
  };

  let during: { status: number; code: string; requestId?: string };
  const state: FlowState = {};
  if (step === 'install key fetch') {
    // A kid the relay has never seen, so the key is really fetched.
    const key = rsaKeyPair();
    const kid = `${siteName}-kid`;
    keys.addKey(kid, key.publicKeyPem);
    const lift = injectFault(cell);
    during = await install(cell, kid, key.privateKeyPem);
    lift();
    if (during.status !== 204) {
      // Nothing was stored: the site's tokens are unknown to the relay.
      const refused = await client.requestTicket(`JWT ${site.contextToken({ accountId: cell.accountId })}`, { contentId: PAGE, files: [{ name: 'x', size: 1 }] });
      expect(refused.status).toBe(401);
      expect((await install(cell, kid, key.privateKeyPem)).status).toBe(204);
    }
  } else {
    expect(await install(cell)).toEqual({ status: 204, code: 'ok' });
    if (step === 'ticket read') {
      // One upload first, so that the relay's uploads function knows the tenant: the faulted one starts early.
      expect(await browserFlow({ ...cell, name: `warm-${cell.name}`, bytes: randomBytes(64) }, {})).toMatchObject({ status: 200 });
    }
    const begun = standIn.requests.length;
    const lift = injectFault(cell);
    try {
      during = await browserFlow(cell, state);
    } finally {
      lift();
    }
    if (step === 'ticket read') {
      // The upload started on the signed ticket before the store answered (the access log says so), and
      // whatever of it reached Confluence was cut short unless the store said yes.
      let line: Record<string, any> | undefined;
      for (let wait = 0; !line && wait < 50; wait += 1) {
        line = relay.logLines().find((l) => l.message === 'request' && l.correlation_id === during.requestId);
        if (!line) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect({ cell: siteName, ticketCheck: line?.ticketCheck }).toEqual({ cell: siteName, ticketCheck: 'early' });
      const uploads = standIn.requests.slice(begun).filter((r) => r.siteName === site.name && r.path.endsWith('/child/attachment') && r.method !== 'GET');
      if (during.status !== 200) expect({ cell: siteName, answered: uploads.filter((r) => r.status !== 0) }).toEqual({ cell: siteName, answered: [] });
    }
  }
  const afterFault = attachmentsOf(cell);
  // Zero lost: a 200 means exactly one attachment with the right bytes; zero duplicated: never more.
  if (during.status === 200 || during.status === 204) {
    if (step !== 'install key fetch') expect({ cell: siteName, ...afterFault }).toEqual({ cell: siteName, count: 1, versions: 1, rightBytes: true });
  }
  expect(afterFault.count).toBeLessThanOrEqual(1);
  expect(afterFault.versions).toBeLessThanOrEqual(1);
  const leftBehind = staged ? (await stagedObjectsLeft(cell)).length : 0;

  // The fault is gone: the browser tries again (with the ticket it has, if any).
  const recovery = step === 'install key fetch' ? await browserFlow(cell, {}) : await browserFlow(cell, state);
  const afterRecovery = attachmentsOf(cell);
  if (recovery.status === 200) expect({ cell: siteName, ...afterRecovery }).toEqual({ cell: siteName, count: 1, versions: 1, rightBytes: true });
  expect(afterRecovery.count).toBeLessThanOrEqual(1);
  expect(afterRecovery.versions).toBeLessThanOrEqual(1);
  if (staged) for (const key of await stagedObjectsLeft(cell)) await s3Client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));

  return {
    status: during.status,
    code: during.code,
    attachments: afterFault.count,
    leftBehind,
    recoveryStatus: recovery.status,
    recoveryCode: recovery.code,
    attachmentsAfterRecovery: afterRecovery.count,
  };
}

beforeAll(async () => {
  standIn = await startConfluenceStandIn({ appKey: 'confluence-upload-relay' });
  dynamo = await startDynalite();
  s3 = await startS3rver();
  keys = await startKeyServer();
  keys.addKey(INSTALL_KID, installKey.publicKeyPem);
  [dynamoProxy, s3Proxy, keyProxy, confluenceProxy] = await Promise.all([
    startFaultProxy(dynamo.endpoint),
    startFaultProxy(s3.endpoint),
    startFaultProxy(keys.url),
    startFaultProxy(standIn.origin),
  ]);
  s3Client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: S3RVER_CREDENTIALS });
  relay = await startRelayProcess({
    DYNAMODB_ENDPOINT: dynamoProxy.url,
    TABLE_NAME: TABLE,
    S3_ENDPOINT: s3Proxy.url,
    STAGING_BUCKET: BUCKET,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    CONNECT_INSTALL_KEYS_URL: keyProxy.url,
    OAUTH_TOKEN_URL: standIn.oauthTokenUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
    API_CALL_TIMEOUT_MS: String(API_CALL_TIMEOUT_MS),
    DIRECT_MAX_BYTES: String(DIRECT_MAX_BYTES),
    // INFO: the access log tells how each upload's ticket was checked.
    POWERTOOLS_LOG_LEVEL: 'INFO',
  });
  client = new RelayClient(relay.url);
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  await Promise.all([dynamoProxy, s3Proxy, keyProxy, confluenceProxy].map((proxy) => proxy?.close()));
  await keys?.close();
  await s3?.close();
  await dynamo?.close();
  await standIn?.close();
  if (process.env.FAULT_MATRIX_OUT && results.length > 0) {
    const rows = results.map(({ step, fault, outcome }) =>
      `| ${step} | ${fault} | ${outcome.status} ${outcome.code} | ${outcome.attachments} | ${STEPS[step].flow === 'staged' ? outcome.leftBehind : '–'} | ${outcome.recoveryStatus} ${outcome.recoveryCode} | ${outcome.attachmentsAfterRecovery} |`,
    );
    writeFileSync(
      process.env.FAULT_MATRIX_OUT,
      ['| step | fault | browser sees | attachments | staged objects left | browser retries | attachments after |', '|---|---|---|---|---|---|---|', ...rows].join('\n') + '\n',
    );
  }
});

describe('fault matrix: zero lost, zero duplicated', () => {
  it('answers every step × fault as documented', async () => {
    const cells = (Object.keys(STEPS) as StepName[]).flatMap((step) => FAULTS.map((fault) => ({ step, fault })));
    // Token cells share the stand-in's token endpoint (failNext is not per site): they run one at a time.
    const tokenCells = cells.filter((cell) => cell.step === 'token endpoint');
    const otherCells = cells.filter((cell) => cell.step !== 'token endpoint');
    const mismatches: string[] = [];
    const run = async ({ step, fault }: { step: StepName; fault: FaultName }) => {
      const outcome = await runCell(step, fault);
      results.push({ step, fault, outcome });
      const expected = EXPECTED[step][fault];
      const seen = `${outcome.status} ${outcome.code} / retry ${outcome.recoveryStatus} ${outcome.recoveryCode}`;
      const wanted = `${expected.status} ${expected.code} / retry ${expected.recovery}`;
      if (seen !== wanted) mismatches.push(`${step} × ${fault}: saw ${seen}, expected ${wanted}`);
    };
    const queue = [...otherCells];
    await Promise.all([
      (async () => {
        for (const cell of tokenCells) await run(cell);
      })(),
      ...Array.from({ length: CONCURRENCY - 1 }, async () => {
        for (let cell = queue.shift(); cell; cell = queue.shift()) await run(cell);
      }),
    ]);
    results.sort((a, b) => Object.keys(STEPS).indexOf(a.step) - Object.keys(STEPS).indexOf(b.step) || FAULTS.indexOf(a.fault) - FAULTS.indexOf(b.fault));
    expect(mismatches).toEqual([]);
  }, 170_000);
});
