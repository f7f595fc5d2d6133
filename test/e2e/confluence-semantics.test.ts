import { createHash, randomBytes } from 'node:crypto';
import { startConfluenceStandIn } from '../confluence-stand-in/stand-in';
import type { ConfluenceStandIn, Site } from '../confluence-stand-in/types';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { RelayClient, declare, type UploadPart } from '../helpers/relay-client';
import { MAX_ATTEMPTS } from '../../functions/src/uploads/relay-file';

/**
 * How the relay behaves against every answer Confluence can give (issue:
 * Confluence semantics), seen from the browser and counted at the stand-in:
 * never two attachments where one was meant, never one silently missing.
 * The relay runs as deployed by default: uploads act as the user.
 */
const PAGE = '2001';
const USER = 'account-alice';

let standIn: ConfluenceStandIn;
let site: Site;
let relay: RelayProcess;
let client: RelayClient;
let counter = 0;

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const uploadPath = `/child/attachment`;

function part(size = 2048): UploadPart {
  counter += 1;
  return { name: `file-${counter}.bin`, bytes: randomBytes(size) };
}

async function upload(parts: UploadPart[], accountId = USER) {
  const ticket = await client.ticket(site.contextToken({ accountId }), PAGE, declare(parts));
  const response = await client.upload(ticket, parts);
  const body = (await response.json()) as Record<string, any>;
  return { ticket, response, body };
}

/** The attachments the page holds under `name`. */
const stored = (name: string) => site.attachments(PAGE).filter((a) => a.title === name);

beforeAll(async () => {
  standIn = await startConfluenceStandIn({ appKey: 'confluence-upload-relay' });
  site = standIn.site();
  site.addPage(PAGE);
  relay = await startRelayProcess({
    CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
    OAUTH_TOKEN_URL: standIn.oauthTokenUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    UPSTREAM_TIMEOUT_MS: '2000',
    API_CALL_TIMEOUT_MS: '2000',
  });
  client = new RelayClient(relay.url);
  const install = await client.install(site.installRequest({ relayBaseUrl: relay.url }));
  expect(install.status).toBe(204);
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  await standIn?.close();
});

describe('acting as the user', () => {
  it('uploads with the user as author, fetching one token per function for several uploads', async () => {
    const before = site.tokenRequests;
    const first = part();
    const second = part();
    expect((await upload([first])).response.status).toBe(200);
    expect((await upload([second])).response.status).toBe(200);
    expect(stored(first.name)).toEqual([expect.objectContaining({ createdBy: USER, sha256: sha256(first.bytes) })]);
    expect(stored(second.name)).toEqual([expect.objectContaining({ createdBy: USER })]);
    // The tickets function (self-check of the user's edit right) and the uploads
    // function each fetch one token; the second upload reuses both.
    expect(site.tokenRequests - before).toBe(2);
  });

  it('lets Confluence refuse a user who lost edit rights after getting the ticket (403, nothing stored)', async () => {
    const file = part();
    const ticket = await client.ticket(site.contextToken({ accountId: 'account-bob' }), PAGE, declare([file]));
    site.addPage(PAGE, { editors: [USER] });
    try {
      const response = await client.upload(ticket, [file]);
      expect(response.status).toBe(403);
      expect(((await response.json()) as Record<string, any>).error.code).toBe('forbidden');
      expect(stored(file.name)).toEqual([]);
    } finally {
      site.addPage(PAGE);
    }
  });

  it('renews an expired user token once and uploads', async () => {
    expect((await upload([part()])).response.status).toBe(200);
    const before = site.tokenRequests;
    site.expireBearerTokens();
    const file = part();
    expect((await upload([file])).response.status).toBe(200);
    expect(stored(file.name)).toHaveLength(1);
    // Each function renews its expired token once.
    expect(site.tokenRequests - before).toBe(2);
  });

  it('answers 503 token_service_unavailable when the token endpoint is down at upload time, and never falls back to the app', async () => {
    const file = part();
    const ticket = await client.ticket(site.contextToken({ accountId: USER }), PAGE, declare([file]));
    // The uploads function's cached token is refused (401); renewing it fails.
    site.expireBearerTokens();
    standIn.failNext({ pathIncludes: '/oauth2/token', status: 500 });
    const response = await client.upload(ticket, [file]);
    const body = (await response.json()) as Record<string, any>;
    expect(response.status).toBe(503);
    expect(body.error.code).toBe('token_service_unavailable');
    expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(stored(file.name)).toEqual([]);
    expect(standIn.requests.filter((r) => r.path.endsWith(uploadPath) && r.method !== 'GET' && r.authKind === 'jwt').length).toBe(0);
  });

  it('answers 503 at ticket time when the user\'s right cannot be checked for lack of a token', async () => {
    site.expireBearerTokens();
    standIn.failNext({ pathIncludes: '/oauth2/token', status: 503 });
    const response = await client.requestTicket(`JWT ${site.contextToken({ accountId: USER })}`, { contentId: PAGE, files: [{ name: 'x.bin', size: 1 }] });
    expect(response.status).toBe(503);
    expect(((await response.json()) as Record<string, any>).error.code).toBe('token_service_unavailable');
  });

  it('answers 502 token_refused when the authorization server refuses the grant', async () => {
    const file = part();
    const ticket = await client.ticket(site.contextToken({ accountId: USER }), PAGE, declare([file]));
    site.expireBearerTokens();
    standIn.failNext({ pathIncludes: '/oauth2/token', status: 400, body: { error: 'invalid_grant' } });
    const response = await client.upload(ticket, [file]);
    expect(response.status).toBe(502);
    expect(((await response.json()) as Record<string, any>).error.code).toBe('token_refused');
    expect(stored(file.name)).toEqual([]);
  });
});

describe('the ticket-time permission check', () => {
  it('fails closed with 502 permission_check_refused when Confluence refuses the check itself', async () => {
    standIn.failNext({ method: 'POST', pathIncludes: '/permission/check', status: 403 });
    const response = await client.requestTicket(`JWT ${site.contextToken({ accountId: USER })}`, { contentId: PAGE, files: [{ name: 'x.bin', size: 1 }] });
    expect(response.status).toBe(502);
    expect(((await response.json()) as Record<string, any>).error.code).toBe('permission_check_refused');
  });

  it('is asked as the user themself (a self-check) when uploads act as the user', async () => {
    const before = standIn.requests.length;
    await client.ticket(site.contextToken({ accountId: USER }), PAGE, [{ name: 'self-check.bin', size: 1 }]);
    const checks = standIn.requests.slice(before).filter((r) => r.path.endsWith('/permission/check'));
    // (A token expired by an earlier test is renewed first: a 401, then the check.)
    expect(checks.at(-1)).toEqual(expect.objectContaining({ authKind: 'bearer', accountId: USER, status: 200 }));
    expect(checks.filter((check) => check.authKind !== 'bearer')).toEqual([]);
  });
});

describe('rate limits and transient failures', () => {
  it.each<[string, Parameters<ConfluenceStandIn['failNext']>[0]]>([
    ['429 with Retry-After', { status: 429, headers: { 'retry-after': '1' } }],
    ['429 without Retry-After', { status: 429 }],
    ['a burst of 503s', { status: 503, times: 2 }],
    ['a 500', { status: 500 }],
    ['a connection reset mid-body', { resetAfterBytes: 1024 }],
  ])('retries %s and stores the file exactly once', async (_name, rule) => {
    const file = part(64 * 1024);
    standIn.failNext({ method: 'PUT', pathIncludes: uploadPath, ...rule });
    const { response, body } = await upload([file]);
    expect(response.status).toBe(200);
    expect(body.attachments[0]).toMatchObject({ name: file.name, fileSize: file.bytes.length });
    expect(stored(file.name)).toEqual([expect.objectContaining({ sha256: sha256(file.bytes), version: 1 })]);
  });

  it.each<[string, Parameters<ConfluenceStandIn['failNext']>[0]]>([
    ['stored, but the answer is lost (reset)', { passThrough: true, resetConnection: true }],
    ['stored, but the answer comes after the timeout', { passThrough: true, delayMs: 3000 }],
  ])('after an ambiguous failure (%s) finds the attachment instead of sending it twice', async (_name, rule) => {
    const file = part(32 * 1024);
    standIn.failNext({ method: 'PUT', pathIncludes: uploadPath, ...rule });
    const { response, body } = await upload([file]);
    expect(response.status).toBe(200);
    expect(stored(file.name)).toEqual([expect.objectContaining({ sha256: sha256(file.bytes), version: 1 })]);
    expect(body.attachments[0].id).toBe(stored(file.name)[0].id);
  });

  it('gives up on a lasting rate limit with 429 and Retry-After, creating nothing; the same ticket works later', async () => {
    const file = part();
    standIn.failNext({ method: 'PUT', pathIncludes: uploadPath, status: 429, headers: { 'retry-after': '60' }, times: 1 });
    const { ticket, response, body } = await upload([file]);
    expect(response.status).toBe(429);
    expect(body.error.code).toBe('rate_limited');
    expect(response.headers.get('retry-after')).toBe('60');
    expect(stored(file.name)).toEqual([]);

    const again = await client.upload(ticket, [file]);
    expect(again.status).toBe(200);
    expect(stored(file.name)).toHaveLength(1);
  });

  it('gives up on lasting 5xx with 502 upstream_error, creating nothing', async () => {
    const file = part();
    standIn.failNext({ method: 'PUT', pathIncludes: uploadPath, status: 500, times: MAX_ATTEMPTS });
    const { response, body } = await upload([file]);
    expect(response.status).toBe(502);
    expect(body.error.code).toBe('upstream_error');
    expect(stored(file.name)).toEqual([]);
  });
});

describe('Confluence answers', () => {
  it('adds a new version for an existing name (ON_NAME_CONFLICT=version) and says so', async () => {
    const file = part();
    expect((await upload([file])).response.status).toBe(200);
    const second = { name: file.name, bytes: randomBytes(3000) };
    const { response, body } = await upload([second]);
    expect(response.status).toBe(200);
    expect(body.attachments[0]).toMatchObject({ outcome: 'versioned', version: 2, fileSize: 3000 });
    expect(stored(file.name)).toEqual([expect.objectContaining({ version: 2, sha256: sha256(second.bytes) })]);
  });

  it('says "created" for a new name', async () => {
    const { body } = await upload([part()]);
    expect(body.attachments[0].outcome).toBe('created');
  });

  it('maps the 404 Confluence gives for a file over the site limit to 413, and refuses such sizes at ticket time', async () => {
    const file = part(50_000);
    standIn.failNext({ method: 'PUT', pathIncludes: uploadPath, status: 404 });
    const { response, body } = await upload([file]);
    expect(response.status).toBe(413);
    expect(body.error.code).toBe('exceeds_site_limit');
    expect(stored(file.name)).toEqual([]);

    const tooBig = await client.requestTicket(`JWT ${site.contextToken({ accountId: USER })}`, { contentId: PAGE, files: [{ name: 'bigger.bin', size: 60_000 }] });
    expect(tooBig.status).toBe(413);
    expect(((await tooBig.json()) as Record<string, any>).error.code).toBe('exceeds_site_limit');
    expect((await upload([part(10_000)])).response.status).toBe(200);
  });

  it('answers 404 content_not_found when the page is gone', async () => {
    const file = part();
    const ticket = await client.ticket(site.contextToken({ accountId: USER }), PAGE, declare([file]));
    site.removePage(PAGE);
    try {
      const response = await client.upload(ticket, [file]);
      expect(response.status).toBe(404);
      expect(((await response.json()) as Record<string, any>).error.code).toBe('content_not_found');
    } finally {
      site.addPage(PAGE);
    }
  });
});
