import { createHash, randomBytes } from 'node:crypto';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { startConfluenceStandIn } from '../confluence-stand-in/stand-in';
import type { ConfluenceStandIn, ForgeInvocationOptions, Site } from '../confluence-stand-in/types';
import { startDynalite } from '../../functions/src/local/dynamodb-local';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { RelayClient, declare, type UploadPart } from '../helpers/relay-client';
import { rsaKeyPair } from '../helpers/jwt';

/**
 * Forge Remote (contract "Tickets for Forge apps"): the same tickets and
 * uploads for an app that calls the relay through Forge's invokeRemote, with
 * the FIT and the OAuth tokens Forge sends, reaching Confluence through the
 * stand-in's `/ex/confluence/<cloudId>` gateway.
 */
const APP_ID = 'ari:cloud:ecosystem::app/7f3c1a52-1111-4222-8333-944455556666';
const PAGE = '5001';
const RESTRICTED = '5002';
const ALICE = 'account-forge-alice';
const MALLORY = 'account-forge-mallory';
const MiB = 1024 * 1024;

let standIn: ConfluenceStandIn;
let forgeSite: Site;
let bridgeSite: Site;
let dynamo: Awaited<ReturnType<typeof startDynalite>>;
let relay: RelayProcess;
let client: RelayClient;
let counter = 0;
const issuedTokens: string[] = [];

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
function part(size = 4096, type = 'application/octet-stream'): UploadPart {
  counter += 1;
  return { name: `forge-${counter}.bin`, bytes: randomBytes(size), type };
}

/** POST /tickets as Forge's invokeRemote would call it. */
async function forgeTicket(site: Site, options: Partial<ForgeInvocationOptions>, body: Record<string, unknown>) {
  const invocation = site.forgeInvocation({ appId: APP_ID, ...options });
  for (const name of ['x-forge-oauth-user', 'x-forge-oauth-system']) if (invocation.headers[name]) issuedTokens.push(invocation.headers[name]);
  const response = await fetch(`${relay.url}/tickets`, {
    method: 'POST',
    headers: { ...invocation.headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { response, body: (await response.json()) as Record<string, any> };
}

beforeAll(async () => {
  standIn = await startConfluenceStandIn({ appKey: 'confluence-upload-relay' });
  forgeSite = standIn.site('forge-only');
  forgeSite.addPage(PAGE);
  forgeSite.addPage(RESTRICTED, { editors: [ALICE] });
  bridgeSite = standIn.site('connect-on-forge');
  bridgeSite.addPage(PAGE);
  dynamo = await startDynalite();
  relay = await startRelayProcess({
    DYNAMODB_ENDPOINT: dynamo.endpoint,
    TABLE_NAME: 'relay-forge',
    CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
    OAUTH_TOKEN_URL: standIn.oauthTokenUrl,
    FORGE_APP_IDS: APP_ID,
    FORGE_JWKS_URL: standIn.forgeJwksUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOWED_FORGE_API_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    DIRECT_MAX_BYTES: String(1 * MiB),
    COMPLETE_WAIT_MS: '10000',
  });
  client = new RelayClient(relay.url);
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  await dynamo?.close();
  await standIn?.close();
});

describe('uploads for a Forge app', () => {
  it('direct: acts as the user whose token Forge sent; bytes verified at the stand-in', async () => {
    const file = part();
    const { response, body } = await forgeTicket(forgeSite, { accountId: ALICE, contentId: PAGE }, { contentId: PAGE, files: declare([file]) });
    expect(response.status).toBe(201);
    const upload = await client.upload(body.ticket, [file]);
    expect(upload.status).toBe(200);
    const result = ((await upload.json()) as Record<string, any>).attachments[0];
    expect(result.downloadUrl.startsWith(`${forgeSite.forgeApiBaseUrl}/wiki`)).toBe(true);
    expect(forgeSite.attachments(PAGE).filter((a) => a.title === file.name)).toEqual([
      expect.objectContaining({ sha256: sha256(file.bytes), createdBy: ALICE }),
    ]);
  });

  it('staged: a 3 MiB file through the staging bucket, as the user', async () => {
    const file = part(3 * MiB, 'application/zip');
    const { response, body } = await forgeTicket(forgeSite, { accountId: ALICE, contentId: PAGE }, { contentId: PAGE, files: declare([file]) });
    expect(response.status).toBe(201);
    const entry = body.uploads[0];
    expect(entry.mode).toBe('staged');
    const form = new FormData();
    for (const [name, value] of Object.entries(entry.post.fields as Record<string, string>)) form.append(name, value);
    form.append('file', new Blob([new Uint8Array(file.bytes)]), file.name);
    expect((await fetch(entry.post.url, { method: 'POST', body: form })).status).toBeLessThan(300);
    let answer = await fetch(entry.completeUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${body.ticket}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: file.name }),
    });
    let result = (await answer.json()) as Record<string, any>;
    for (let i = 0; answer.status === 202 && i < 100; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      answer = await fetch(result.statusUrl, { headers: { authorization: `Bearer ${body.ticket}` } });
      result = (await answer.json()) as Record<string, any>;
    }
    expect(answer.status).toBe(200);
    expect(forgeSite.attachments(PAGE).filter((a) => a.title === file.name)).toEqual([
      expect.objectContaining({ sha256: sha256(file.bytes), createdBy: ALICE }),
    ]);
  });

  it('as the app (system token only): checks the user may edit, then uploads as the app', async () => {
    const file = part();
    const refused = await forgeTicket(forgeSite, { accountId: MALLORY, userToken: false, contentId: RESTRICTED }, { contentId: RESTRICTED, files: declare([file]) });
    expect(refused.response.status).toBe(403);
    const { response, body } = await forgeTicket(forgeSite, { accountId: ALICE, userToken: false, contentId: RESTRICTED }, { contentId: RESTRICTED, files: declare([file]) });
    expect(response.status).toBe(201);
    expect((await client.upload(body.ticket, [file])).status).toBe(200);
    expect(forgeSite.attachments(RESTRICTED).filter((a) => a.title === file.name)).toEqual([expect.objectContaining({ createdBy: 'app' })]);
  });

  it("lets Confluence refuse a user token without edit rights (403), creating nothing", async () => {
    const file = part();
    const { response, body } = await forgeTicket(forgeSite, { accountId: MALLORY, contentId: RESTRICTED }, { contentId: RESTRICTED, files: declare([file]) });
    expect(response.status).toBe(201);
    const upload = await client.upload(body.ticket, [file]);
    expect(upload.status).toBe(403);
    expect(forgeSite.attachments(RESTRICTED).filter((a) => a.title === file.name)).toEqual([]);
  });

  it('refuses a ticket for another page than the one the FIT says the app runs on', async () => {
    const { response, body } = await forgeTicket(forgeSite, { accountId: ALICE, contentId: PAGE }, { contentId: RESTRICTED, files: [{ name: 'x', size: 1 }] });
    expect(response.status).toBe(403);
    expect(body.error.code).toBe('content_mismatch');
  });
});

describe('FIT attacks', () => {
  const otherKey = rsaKeyPair();
  const cases: Array<[string, Partial<ForgeInvocationOptions>]> = [
    ['an expired FIT', { expiresInSeconds: -60 }],
    ['a FIT for another app', { claims: { aud: 'ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000' } }],
    ['a FIT signed by another key', { privateKeyPem: otherKey.privateKeyPem }],
    ['a FIT with an unknown kid', { header: { kid: 'forge/invocation-token/unknown' } }],
    ['an apiBaseUrl outside ALLOWED_FORGE_API_HOSTS', { claims: { 'app.apiBaseUrl': 'https://evil.example.com/ex/confluence/x' } }],
    ['a FIT of another issuer', { claims: { iss: 'not-forge' } }],
    ['no OAuth token at all', { userToken: false, systemToken: false }],
  ];
  for (const [name, options] of cases) {
    it(`refuses ${name} with 401, creating nothing`, async () => {
      const before = forgeSite.allAttachments().length;
      const { response, body } = await forgeTicket(forgeSite, { accountId: ALICE, contentId: PAGE, ...options }, { contentId: PAGE, files: [{ name: 'attack.bin', size: 10 }] });
      expect(response.status).toBe(401);
      expect(body.error.code).toBe('unauthorized');
      expect(forgeSite.allAttachments().length).toBe(before);
    });
  }
});

describe('Connect-on-Forge', () => {
  it('recognises a Connect tenant calling through Forge Remote as the same tenant', async () => {
    // The Connect install of an app registered on Forge names its installation.
    const install = bridgeSite.installRequest({ relayBaseUrl: relay.url, payload: { installationId: bridgeSite.forgeInstallationId } });
    expect((await client.install(install)).status).toBe(204);

    // The Connect side learns the site's attachment limit (Confluence's 404 for size).
    const connectFile = part(50_000);
    const connectTicket = await client.ticket(bridgeSite.contextToken({ accountId: ALICE }), PAGE, declare([connectFile]));
    standIn.failNext({ method: 'PUT', pathIncludes: '/child/attachment', status: 404 });
    expect((await client.upload(connectTicket, [connectFile])).status).toBe(413);

    // The Forge side of the same installation is the same tenant: it knows the limit too…
    const tooBig = await forgeTicket(bridgeSite, { accountId: ALICE, contentId: PAGE }, { contentId: PAGE, files: [{ name: 'big.bin', size: 60_000 }] });
    expect(tooBig.response.status).toBe(413);
    expect(tooBig.body.error.code).toBe('exceeds_site_limit');

    // …and its tickets are logged under the Connect clientKey.
    const file = part();
    const { response, body } = await forgeTicket(bridgeSite, { accountId: ALICE, contentId: PAGE }, { contentId: PAGE, files: declare([file]) });
    expect(response.status).toBe(201);
    expect((await client.upload(body.ticket, [file])).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const ticketLines = relay.logLines().filter((l) => l.message === 'request' && l.route === 'tickets' && l.status === 201);
    expect(ticketLines.at(-1)?.tenant).toBe(bridgeSite.clientKey);
    expect(bridgeSite.attachments(PAGE).filter((a) => a.title === file.name)).toEqual([expect.objectContaining({ createdBy: ALICE })]);
  });
});

describe('Forge tokens at rest', () => {
  it('keeps the OAuth tokens only sealed, and never logs them', async () => {
    expect(issuedTokens.length).toBeGreaterThan(5);
    const dynamoClient = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
    const table = JSON.stringify((await dynamoClient.send(new ScanCommand({ TableName: 'relay-forge' }))).Items);
    expect(table).toContain('sealedToken');
    const logs = relay.output();
    for (const token of issuedTokens) {
      expect(table).not.toContain(token);
      expect(logs).not.toContain(token);
    }
    expect(logs).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  });
});
