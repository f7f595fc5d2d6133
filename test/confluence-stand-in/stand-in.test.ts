/**
 * Tests of the Confluence Cloud stand-in itself (not of the relay). Everything goes over real HTTP on loopback.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AsymmetricAlgorithm,
  SymmetricAlgorithm,
  createQueryStringHash,
  decodeAsymmetric,
  decodeSymmetric,
  encodeAsymmetric,
  encodeSymmetric,
  fromMethodAndUrl,
} from 'atlassian-jwt';
import { runHandler } from './http-util';
import { MultipartError, MultipartParser, type PartInfo } from './multipart';
import { startConfluenceStandIn, type ConfluenceStandIn, type Site, type StandInOptions } from './stand-in';

// ---------------------------------------------------------------------------------------------------------
// helpers

const APP_KEY = 'confluence-upload-relay';
const UTF8_NAME = 'Zürich 東京 🚀.txt';

const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const nowSec = () => Math.floor(Date.now() / 1000);

/** An app JWT as the relay would mint it: qsh relative to the site baseUrl. */
function appJwt(site: Site, method: string, url: string, claims: Record<string, unknown> = {}, key = site.sharedSecret): string {
  const iat = nowSec();
  const qsh = createQueryStringHash(fromMethodAndUrl(method, url), false, site.baseUrl);
  const payload: Record<string, unknown> = { iss: APP_KEY, iat, exp: iat + 180, qsh, ...claims };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return encodeSymmetric(payload, key, SymmetricAlgorithm.HS256);
}

interface Part {
  name: string;
  filename?: string;
  contentType?: string;
  data: string | Buffer;
}

/** Builds multipart/form-data by hand, with raw UTF-8 bytes in the headers like a browser sends them. */
function multipart(parts: Part[], boundary = `----standin${randomBytes(8).toString('hex')}`): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += '\r\n';
    if (p.contentType !== undefined) head += `Content-Type: ${p.contentType}\r\n`;
    chunks.push(Buffer.from(`${head}\r\n`, 'utf8'), Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

interface UploadOpts {
  method?: 'POST' | 'PUT';
  query?: string;
  headers?: Record<string, string>;
  auth?: string | null; // null = no Authorization header; undefined = a valid app JWT
  body?: Buffer | FormData;
  contentType?: string;
}

async function upload(site: Site, pageId: string, parts: Part[], o: UploadOpts = {}): Promise<Response> {
  const method = o.method ?? 'POST';
  const url = `${site.baseUrl}/rest/api/content/${pageId}/child/attachment${o.query ?? ''}`;
  const mp = multipart(parts);
  const headers: Record<string, string> = { 'X-Atlassian-Token': 'no-check' };
  if (!(o.body instanceof FormData)) headers['Content-Type'] = o.contentType ?? mp.contentType;
  if (o.auth !== null) headers.Authorization = o.auth ?? `JWT ${appJwt(site, method, url)}`;
  Object.assign(headers, o.headers);
  for (const k of Object.keys(headers)) if (headers[k] === '') delete headers[k];
  const body = o.body ?? mp.body;
  return fetch(url, { method, headers, body: body instanceof FormData ? body : new Uint8Array(body) });
}

async function permissionCheck(site: Site, pageId: string, body: unknown, auth?: string, contentType = 'application/json'): Promise<Response> {
  const url = `${site.baseUrl}/rest/api/content/${pageId}/permission/check`;
  return fetch(url, {
    method: 'POST',
    headers: { Authorization: auth ?? `JWT ${appJwt(site, 'POST', url)}`, 'Content-Type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function listAttachments(site: Site, pageId: string, filename?: string, auth?: string): Promise<Response> {
  const url = `${site.baseUrl}/rest/api/content/${pageId}/child/attachment${filename === undefined ? '' : `?filename=${encodeURIComponent(filename)}`}`;
  return fetch(url, { headers: { Authorization: auth ?? `JWT ${appJwt(site, 'GET', url)}` } });
}

/** Raw HTTP request (fetch refuses GET bodies and normalises URLs). */
function rawRequest(
  origin: string,
  opts: { method: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(origin);
    const headers = { ...opts.headers };
    // Node's client sends a GET body without framing unless told its length.
    if (opts.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(opts.body));
    const r = httpRequest({ host: u.hostname, port: u.port, method: opts.method, path: opts.path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    r.on('error', reject);
    r.end(opts.body);
  });
}

interface AttachmentJson {
  id: string;
  type: string;
  status: string;
  title: string;
  version: { number: number; when: string; message: string; minorEdit: boolean; by: { accountId: string } };
  container: { id: string; type: string };
  metadata: { mediaType: string; comment?: string };
  extensions: { mediaType: string; fileSize: number | string; comment?: string; fileId: string; collectionName: string };
  _links: { webui: string; download: string; self: string };
}
interface ContentArray {
  results: AttachmentJson[];
  size: number;
  _links: { base: string; context: string };
}

const started: ConfluenceStandIn[] = [];
async function start(opts?: StandInOptions): Promise<ConfluenceStandIn> {
  const s = await startConfluenceStandIn(opts);
  started.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(started.map((s) => s.close()));
});

// ---------------------------------------------------------------------------------------------------------

describe('install keys and signed lifecycle callbacks', () => {
  let ci: ConfluenceStandIn;
  beforeAll(async () => {
    ci = await start();
  });

  it('serves the RSA 2048 public key by kid and 404 for unknown kids', async () => {
    expect(ci.installKeysUrl).toBe(`${ci.origin}/install-keys`);
    expect(ci.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${ci.installKeysUrl}/${ci.installKey.kid}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const pem = await res.text();
    expect(pem).toBe(ci.installKey.publicKeyPem);
    expect(createPublicKey(pem).asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect((await fetch(`${ci.installKeysUrl}/not-a-kid`)).status).toBe(404);
  });

  it('builds an installed callback signed RS256 with kid, verifiable with the served key', async () => {
    const site = ci.site('lifecycle');
    const relay = 'https://relay.example.com';
    const { body, authorization, token } = site.installRequest({ relayBaseUrl: relay });
    expect(authorization).toBe(`JWT ${token}`);
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
    expect(header).toEqual({ alg: 'RS256', typ: 'JWT', kid: ci.installKey.kid });
    const pem = await (await fetch(`${ci.installKeysUrl}/${header.kid}`)).text();
    const claims = decodeAsymmetric(token, pem, AsymmetricAlgorithm.RS256);
    expect(claims.iss).toBe(site.clientKey);
    expect(claims.aud).toEqual([relay]); // atlassian-jwt normalises aud to an array
    expect(claims.exp - claims.iat).toBe(180);
    expect(Math.abs(claims.iat - nowSec())).toBeLessThanOrEqual(2);
    expect(claims.qsh).toBe(sha256Hex('POST&/lifecycle/installed&'));
    const payload = JSON.parse(body);
    expect(payload).toEqual({
      key: APP_KEY,
      clientKey: site.clientKey,
      sharedSecret: site.sharedSecret,
      baseUrl: site.baseUrl,
      displayUrl: site.baseUrl,
      productType: 'confluence',
      description: expect.any(String),
      eventType: 'installed',
      serverVersion: expect.any(String),
      pluginsVersion: expect.any(String),
      oauthClientId: site.oauthClientId,
    });
    expect(Buffer.from(site.sharedSecret, 'base64url').length).toBeGreaterThanOrEqual(32);
    expect(site.baseUrl).toBe(`${ci.origin}/sites/lifecycle/wiki`);
  });

  it('computes qsh relative to the relay baseUrl (path prefix stripped) and honours overrides', () => {
    const site = ci.site('lifecycle');
    const r = site.installRequest({
      relayBaseUrl: 'https://relay.example.com/prod',
      eventType: 'uninstalled',
      path: '/prod/connect/lifecycle/uninstalled',
      payload: { installationId: 'ari:x', description: undefined },
      claims: { exp: 42, sub: 'someone' },
    });
    const claims = decodeAsymmetric(r.token, ci.installKey.publicKeyPem, AsymmetricAlgorithm.RS256);
    expect(claims.qsh).toBe(sha256Hex('POST&/connect/lifecycle/uninstalled&'));
    expect(claims.exp).toBe(42);
    expect(claims.sub).toBe('someone');
    const payload = JSON.parse(r.body);
    expect(payload.eventType).toBe('uninstalled');
    expect(payload).not.toHaveProperty('sharedSecret'); // only "installed" hands over the secret
    expect(payload).not.toHaveProperty('description');
    expect(payload.installationId).toBe('ari:x');
  });

  it('can forge tokens with another key or kid', () => {
    const site = ci.site('lifecycle');
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const r = site.installRequest({
      relayBaseUrl: 'https://relay.example.com',
      kid: 'evil',
      privateKeyPem: other.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    });
    const header = JSON.parse(Buffer.from(r.token.split('.')[0], 'base64url').toString());
    expect(header.kid).toBe('evil');
    expect(() => decodeAsymmetric(r.token, ci.installKey.publicKeyPem, AsymmetricAlgorithm.RS256)).toThrow(/Signature verification failed/);
  });
});

describe('context tokens', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('100');
  });

  it('are HS256 with the sharedSecret, iss=clientKey, sub=accountId, qsh=context-qsh, 15 min', () => {
    const token = site.contextToken({ accountId: 'acc-1' });
    const claims = decodeSymmetric(token, site.sharedSecret, SymmetricAlgorithm.HS256);
    expect(claims).toEqual({ iss: site.clientKey, sub: 'acc-1', qsh: 'context-qsh', iat: expect.any(Number), exp: claims.iat + 900 });
    const custom = decodeSymmetric(
      site.contextToken({ accountId: 'acc-2', qsh: 'x', expiresInSeconds: 5, claims: { aud: 'a', sub: undefined } }),
      site.sharedSecret,
      SymmetricAlgorithm.HS256,
    );
    expect(custom.qsh).toBe('x');
    expect(custom.exp - custom.iat).toBe(5);
    expect(custom.aud).toEqual(['a']);
    expect(custom).not.toHaveProperty('sub');
  });

  it('do not authenticate REST calls (wrong iss and qsh)', async () => {
    const res = await permissionCheck(site, '100', { subject: { type: 'user', identifier: 'a' }, operation: 'read' }, `JWT ${site.contextToken({ accountId: 'a' })}`);
    expect(res.status).toBe(401);
  });
});

describe('app JWT authentication', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  const body = { subject: { type: 'user', identifier: 'acc' }, operation: 'read' };
  let url: string;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('123');
    url = `${site.baseUrl}/rest/api/content/123/permission/check`;
  });

  it('accepts a correct token whose qsh is relative to the site baseUrl (context path stripped)', async () => {
    const iat = nowSec();
    // Independent of atlassian-jwt: the documented canonical request for this call.
    const qsh = sha256Hex('POST&/rest/api/content/123/permission/check&');
    const token = encodeSymmetric({ iss: APP_KEY, iat, exp: iat + 60, qsh }, site.sharedSecret);
    const res = await permissionCheck(site, '123', body, `JWT ${token}`);
    expect(res.status).toBe(200);
  });

  const rejected: Array<[string, () => string]> = [
    ['a wrong signing secret', () => appJwt(site, 'POST', url, {}, 'not-the-secret')],
    ['a wrong iss', () => appJwt(site, 'POST', url, { iss: 'other-app' })],
    ['a clientKey as iss', () => appJwt(site, 'POST', url, { iss: site.clientKey })],
    ['an expired token (beyond 30 s skew)', () => appJwt(site, 'POST', url, { exp: nowSec() - 31 })],
    ['no exp', () => appJwt(site, 'POST', url, { exp: undefined })],
    ['no qsh', () => appJwt(site, 'POST', url, { qsh: undefined })],
    ['qsh computed with the /wiki context path', () => appJwt(site, 'POST', url, { qsh: createQueryStringHash(fromMethodAndUrl('POST', url)) })],
    ['qsh for another method', () => appJwt(site, 'POST', url, { qsh: createQueryStringHash(fromMethodAndUrl('PUT', url), false, site.baseUrl) })],
    ['qsh = context-qsh', () => appJwt(site, 'POST', url, { qsh: 'context-qsh' })],
    ['HS512 instead of HS256', () => encodeSymmetric({ iss: APP_KEY, exp: nowSec() + 60, qsh: sha256Hex('POST&/rest/api/content/123/permission/check&') }, site.sharedSecret, SymmetricAlgorithm.HS512)],
    ['alg none', () => {
      const seg = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${seg({ alg: 'none', typ: 'JWT' })}.${seg({ iss: APP_KEY, exp: nowSec() + 60, qsh: sha256Hex('POST&/rest/api/content/123/permission/check&') })}.`;
    }],
    ['garbage', () => 'not.a.jwt'],
  ];
  it.each(rejected)('rejects %s with 401 JSON', async (_label, make) => {
    const res = await permissionCheck(site, '123', body, `JWT ${make()}`);
    expect(res.status).toBe(401);
    const json = await res.json();
    expect(json).toEqual({ statusCode: 401, message: expect.any(String) });
  });

  it('tolerates an exp within the 30 s skew', async () => {
    const res = await permissionCheck(site, '123', body, `JWT ${appJwt(site, 'POST', url, { exp: nowSec() - 10 })}`);
    expect(res.status).toBe(200);
  });

  it('rejects a request without Authorization', async () => {
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status).toBe(401);
    expect((await res.json()).statusCode).toBe(401);
  });

  it('includes the query string in qsh', async () => {
    const withQuery = `${site.baseUrl}/rest/api/content/123/child/attachment?filename=a%20b.txt&expand=version`;
    const ok = await fetch(withQuery, { headers: { Authorization: `JWT ${appJwt(site, 'GET', withQuery)}` } });
    expect(ok.status).toBe(200);
    const noQuery = `${site.baseUrl}/rest/api/content/123/child/attachment`;
    const bad = await fetch(withQuery, { headers: { Authorization: `JWT ${appJwt(site, 'GET', noQuery)}` } });
    expect(bad.status).toBe(401);
  });

  it('uses the configured appKey as expected iss', async () => {
    const other = await start({ appKey: 'my-app' });
    const s = other.site();
    s.addPage('1');
    const u = `${s.baseUrl}/rest/api/content/1/permission/check`;
    expect((await permissionCheck(s, '1', body, `JWT ${appJwt(s, 'POST', u)}`)).status).toBe(401);
    expect((await permissionCheck(s, '1', body, `JWT ${appJwt(s, 'POST', u, { iss: 'my-app' })}`)).status).toBe(200);
  });

  it('keeps sites apart: a token for one site does not work on another', async () => {
    const other = ci.site('other');
    other.addPage('123');
    const res = await permissionCheck(other, '123', body, `JWT ${appJwt(site, 'POST', url)}`);
    expect(res.status).toBe(401);
  });
});

describe('bearer tokens (acting as a user)', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('7', { editors: ['alice'] });
  });

  it('are refused until registered', async () => {
    const res = await upload(site, '7', [{ name: 'file', filename: 'a.txt', data: 'x' }], { auth: 'Bearer abc' });
    expect(res.status).toBe(401);
    expect((await res.json()).message).toBe('bearer tokens not supported yet');
  });

  it('act as the registered user: editors may upload, others get 403', async () => {
    site.acceptBearer('tok-alice', 'alice');
    site.acceptBearer('tok-bob', 'bob');
    const denied = await upload(site, '7', [{ name: 'file', filename: 'b.txt', data: 'x' }], { auth: 'Bearer tok-bob' });
    expect(denied.status).toBe(403);
    expect(site.attachments('7')).toHaveLength(0);

    const ok = await upload(site, '7', [{ name: 'file', filename: 'a.txt', data: 'x' }], { auth: 'Bearer tok-alice' });
    expect(ok.status).toBe(200);
    const json = (await ok.json()) as ContentArray;
    expect(json.results[0].version.by.accountId).toBe('alice');
    expect(site.attachments('7')[0].createdBy).toBe('alice');

    const list = await listAttachments(site, '7', 'a.txt', 'Bearer tok-bob'); // reading is open to everyone
    expect(list.status).toBe(200);
    expect(((await list.json()) as ContentArray).size).toBe(1);

    expect((await upload(site, '7', [{ name: 'file', filename: 'c.txt', data: 'x' }], { auth: 'Bearer nope' })).status).toBe(401);
    const rec = ci.requests.filter((r) => r.authKind === 'bearer');
    expect(rec.map((r) => r.status)).toEqual([401, 403, 200, 200, 401]);
    expect(rec[2].accountId).toBe('alice');
  });

  it('app uploads are recorded as createdBy app, shown as the app bot user', async () => {
    site.addPage('8');
    const res = await upload(site, '8', [{ name: 'file', filename: 'a.txt', data: 'x' }]);
    const json = (await res.json()) as ContentArray;
    expect(json.results[0].version.by.accountId).toBe(site.appAccountId);
    expect(site.attachments('8')[0].createdBy).toBe('app');
  });
});

describe('permission check', () => {
  let site: Site;
  beforeAll(async () => {
    site = (await start()).site();
    site.addPage('1', { editors: ['alice'] });
    site.addPage('2');
  });

  it.each([
    ['1', 'alice', 'update', true],
    ['1', 'bob', 'update', false],
    ['1', 'bob', 'read', true],
    ['2', 'bob', 'update', true],
  ])('page %s, %s may %s: %s', async (page, who, operation, expected) => {
    const res = await permissionCheck(site, page, { subject: { type: 'user', identifier: who }, operation });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ hasPermission: expected, errors: [] });
  });

  it('404 for an unknown page, 404 after removePage', async () => {
    const body = { subject: { type: 'user', identifier: 'a' }, operation: 'read' };
    const res = await permissionCheck(site, '999', body);
    expect(res.status).toBe(404);
    expect((await res.json()).statusCode).toBe(404);
    site.addPage('3');
    expect((await permissionCheck(site, '3', body)).status).toBe(200);
    site.removePage('3');
    expect((await permissionCheck(site, '3', body)).status).toBe(404);
  });

  it.each([
    ['not JSON', '{oops'],
    ['no subject', { operation: 'read' }],
    ['group subject', { subject: { type: 'group', identifier: 'g' }, operation: 'read' }],
    ['unknown operation', { subject: { type: 'user', identifier: 'a' }, operation: 'fly' }],
    ['an array', []],
  ])('400 on a malformed body (%s)', async (_label, body) => {
    const res = await permissionCheck(site, '1', body);
    expect(res.status).toBe(400);
    expect((await res.json()).statusCode).toBe(400);
  });

  it('415 for a non-JSON content type', async () => {
    const res = await permissionCheck(site, '1', 'x', undefined, 'text/plain');
    expect(res.status).toBe(415);
  });
});

describe('attachment upload', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site('acme');
  });

  it('creates attachments and answers with the ContentArray shape', async () => {
    site.addPage('10');
    const res = await upload(
      site,
      '10',
      [
        { name: 'file', filename: 'report.pdf', contentType: 'application/pdf', data: 'PDFDATA' },
        { name: 'file', filename: 'raw.bin', data: Buffer.from([0, 1, 2, 13, 10, 45, 45]) },
        { name: 'comment', contentType: 'text/plain; charset=utf-8', data: 'first ✓' },
        { name: 'comment', contentType: 'text/plain; charset=UTF-8', data: 'second' },
        { name: 'minorEdit', data: 'true' },
        { name: 'somethingElse', data: 'ignored' },
      ],
      { query: '?status=current', method: 'PUT' },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const json = (await res.json()) as ContentArray;
    expect(json.size).toBe(2);
    expect(json._links).toEqual({ base: site.baseUrl, context: '/sites/acme/wiki' });
    const [a, b] = json.results;
    expect(a).toEqual({
      id: expect.stringMatching(/^att\d+$/),
      type: 'attachment',
      status: 'current',
      title: 'report.pdf',
      version: { number: 1, when: expect.any(String), message: 'first ✓', minorEdit: true, by: expect.objectContaining({ accountId: site.appAccountId }) },
      container: { id: '10', type: 'page' },
      metadata: { mediaType: 'application/pdf', comment: 'first ✓' },
      extensions: {
        mediaType: 'application/pdf',
        fileSize: 7,
        comment: 'first ✓',
        fileId: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
        collectionName: 'contentId-10',
      },
      _links: {
        webui: `/pages/viewpageattachments.action?pageId=10&preview=${encodeURIComponent(`/10/${a.id}/report.pdf`)}`,
        download: expect.stringMatching(/^\/download\/attachments\/10\/report\.pdf\?version=1&modificationDate=\d+&api=v2$/),
        self: `${site.baseUrl}/rest/api/content/${a.id}`,
      },
    });
    expect(Number.isNaN(Date.parse(a.version.when))).toBe(false);
    expect(b.id).not.toBe(a.id);
    expect(b.extensions.mediaType).toBe('application/octet-stream');
    expect(b.extensions.fileSize).toBe(7);
    expect(b.version.message).toBe('second');

    const stored = site.attachments('10');
    expect(stored.map((s) => s.title)).toEqual(['report.pdf', 'raw.bin']);
    expect(stored[0]).toMatchObject({ id: a.id, fileSize: 7, mediaType: 'application/pdf', comment: 'first ✓', minorEdit: true, version: 1, createdBy: 'app' });
    expect(stored[0].sha256).toBe(sha256Hex('PDFDATA'));
    expect(stored[1].bytes.equals(Buffer.from([0, 1, 2, 13, 10, 45, 45]))).toBe(true);
    expect(stored[1].sha256).toBe(sha256Hex(Buffer.from([0, 1, 2, 13, 10, 45, 45])));
    expect(site.allAttachments()).toHaveLength(2);
  });

  it('keeps raw UTF-8 filenames exactly (as browsers send them)', async () => {
    site.addPage('11');
    const res = await upload(site, '11', [{ name: 'file', filename: UTF8_NAME, contentType: 'text/plain', data: 'hi' }]);
    expect(res.status).toBe(200);
    const json = (await res.json()) as ContentArray;
    expect(json.results[0].title).toBe(UTF8_NAME);
    expect(json.results[0]._links.download).toContain(`/download/attachments/11/${encodeURIComponent(UTF8_NAME)}?version=1&`);
    expect(site.attachments('11')[0].title).toBe(UTF8_NAME);
    const found = (await (await listAttachments(site, '11', UTF8_NAME)).json()) as ContentArray;
    expect(found.results.map((r) => r.title)).toEqual([UTF8_NAME]);
  });

  it('interoperates with the multipart bodies of Node fetch/FormData', async () => {
    site.addPage('12');
    const fd = new FormData();
    fd.append('file', new Blob(['hello'], { type: 'text/plain' }), UTF8_NAME);
    fd.append('file', new Blob([Buffer.from([255, 0])]), 'say "hi".bin');
    fd.append('minorEdit', 'false');
    const res = await upload(site, '12', [], { body: fd });
    expect(res.status).toBe(200);
    const titles = site.attachments('12').map((a) => a.title);
    // undici (like browsers) escapes a double quote in a filename as %22; Confluence keeps it literally.
    expect(titles).toEqual([UTF8_NAME, 'say %22hi%22.bin']);
    expect(site.attachments('12')[0].mediaType).toBe('text/plain');
  });

  it('accepts both X-Atlassian-Token spellings and refuses a missing one with 403', async () => {
    site.addPage('13');
    const none = await upload(site, '13', [{ name: 'file', filename: 'a.txt', data: 'x' }], { headers: { 'X-Atlassian-Token': '' } });
    expect(none.status).toBe(403);
    expect((await none.json()).message).toMatch(/XSRF/);
    const wrong = await upload(site, '13', [{ name: 'file', filename: 'a.txt', data: 'x' }], { headers: { 'X-Atlassian-Token': 'yes' } });
    expect(wrong.status).toBe(403);
    expect(site.attachments('13')).toHaveLength(0);
    expect((await upload(site, '13', [{ name: 'file', filename: 'a.txt', data: 'x' }], { headers: { 'X-Atlassian-Token': 'nocheck' } })).status).toBe(200);
    expect((await upload(site, '13', [{ name: 'file', filename: 'b.txt', data: 'x' }], { headers: { 'X-Atlassian-Token': 'no-check' } })).status).toBe(200);
  });

  it('requires multipart/form-data with a boundary', async () => {
    site.addPage('14');
    const file = [{ name: 'file', filename: 'a.txt', data: 'x' }];
    expect((await upload(site, '14', file, { contentType: 'application/octet-stream' })).status).toBe(415);
    expect((await upload(site, '14', file, { contentType: 'multipart/form-data' })).status).toBe(400);
    expect(site.attachments('14')).toHaveLength(0);
  });

  it.each<[string, () => Buffer, string?]>([
    ['a truncated body', () => multipart([{ name: 'file', filename: 'a.txt', data: 'x' }], 'B').body.subarray(0, 60)],
    ['a body without any boundary', () => Buffer.from('just some bytes')],
    ['a file part without filename', () => multipart([{ name: 'file', data: 'x' }], 'B').body],
    ['a part without Content-Disposition', () => Buffer.from('--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n')],
    ['garbage after a delimiter', () => Buffer.from('--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nx\r\n--Bxyz\r\n--B--\r\n')],
    ['an unterminated quoted filename', () => Buffer.from('--B\r\nContent-Disposition: form-data; name="file"; filename="a\r\n\r\nx\r\n--B--\r\n')],
    ['headers that are not UTF-8', () => Buffer.concat([Buffer.from('--B\r\nContent-Disposition: form-data; name="file"; filename="'), Buffer.from([0xff, 0xfe]), Buffer.from('"\r\n\r\nx\r\n--B--\r\n')])],
    ['no file part', () => multipart([{ name: 'comment', data: 'x' }], 'B').body],
    ['more comments than files', () => multipart([{ name: 'file', filename: 'a', data: 'x' }, { name: 'comment', data: '1' }, { name: 'comment', data: '2' }], 'B').body],
    ['a bad minorEdit', () => multipart([{ name: 'file', filename: 'a', data: 'x' }, { name: 'minorEdit', data: 'yes' }], 'B').body],
  ])('400 for %s, nothing stored', async (_label, makeBody) => {
    site.addPage('15');
    const res = await upload(site, '15', [], { body: makeBody(), contentType: 'multipart/form-data; boundary=B' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ statusCode: 400, message: expect.any(String) });
    expect(site.attachments('15')).toHaveLength(0);
  });

  it('reads a text part without charset as ISO-8859-1 (like Confluence)', async () => {
    site.addPage('16');
    const res = await upload(site, '16', [
      { name: 'file', filename: 'a.txt', data: 'x' },
      { name: 'comment', data: 'Zürich' },
    ]);
    expect(res.status).toBe(200);
    expect(site.attachments('16')[0].comment).toBe(Buffer.from('Zürich', 'utf8').toString('latin1'));
    expect(site.attachments('16')[0].comment).not.toBe('Zürich');
  });

  it('POST refuses an existing title with 400 and stores nothing of the request', async () => {
    site.addPage('17');
    expect((await upload(site, '17', [{ name: 'file', filename: 'dup.txt', data: 'v1' }])).status).toBe(200);
    const res = await upload(site, '17', [
      { name: 'file', filename: 'fresh.txt', data: 'new' },
      { name: 'file', filename: 'dup.txt', data: 'v2' },
    ]);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      statusCode: 400,
      message: 'Cannot add a new attachment with same file name as an existing attachment: dup.txt',
    });
    expect(site.attachments('17').map((a) => [a.title, a.bytes.toString()])).toEqual([['dup.txt', 'v1']]);
    // The same title twice in one POST is a duplicate too.
    const twice = await upload(site, '17', [
      { name: 'file', filename: 'x.txt', data: '1' },
      { name: 'file', filename: 'x.txt', data: '2' },
    ]);
    expect(twice.status).toBe(400);
    expect(site.attachments('17')).toHaveLength(1);
  });

  it('PUT adds a new version of an existing title (same id, bytes replaced) and creates new ones', async () => {
    site.addPage('18');
    const first = (await (await upload(site, '18', [{ name: 'file', filename: 'doc.txt', data: 'one' }])).json()) as ContentArray;
    const res = await upload(
      site,
      '18',
      [
        { name: 'file', filename: 'doc.txt', contentType: 'text/plain', data: 'two!' },
        { name: 'file', filename: 'other.txt', data: 'o' },
      ],
      { method: 'PUT', query: '?status=current' },
    );
    expect(res.status).toBe(200);
    const json = (await res.json()) as ContentArray;
    expect(json.results[0].id).toBe(first.results[0].id);
    expect(json.results[0].version.number).toBe(2);
    expect(json.results[0].extensions.fileId).not.toBe(first.results[0].extensions.fileId);
    expect(json.results[0]._links.download).toMatch(/\?version=2&/);
    expect(json.results[1].version.number).toBe(1);
    const doc = site.attachments('18').find((a) => a.title === 'doc.txt');
    expect(doc).toMatchObject({ version: 2, fileSize: 4, mediaType: 'text/plain', sha256: sha256Hex('two!') });
    expect(doc?.bytes.toString()).toBe('two!');
    expect(site.attachments('18')).toHaveLength(2);
  });

  it('404 for an unknown page or site, 403 when attachments are disabled', async () => {
    const file = [{ name: 'file', filename: 'a.txt', data: 'x' }];
    const unknown = await upload(site, '404404', file);
    expect(unknown.status).toBe(404);
    expect((await unknown.json()).statusCode).toBe(404);
    site.addPage('19', { attachmentsDisabled: true });
    const disabled = await upload(site, '19', file);
    expect(disabled.status).toBe(403);
    expect(site.attachments('19')).toHaveLength(0);
    const ghost = await fetch(`${ci.origin}/sites/ghost/wiki/rest/api/content/1/child/attachment`, { method: 'POST', body: 'x' });
    expect(ghost.status).toBe(404);
  });

  it('401 without Authorization, and the body is still consumed', async () => {
    site.addPage('20');
    const res = await upload(site, '20', [{ name: 'file', filename: 'a.txt', data: Buffer.alloc(512 * 1024, 1) }], { auth: null });
    expect(res.status).toBe(401);
    expect(site.attachments('20')).toHaveLength(0);
  });

  it('survives a body split into tiny chunks', async () => {
    site.addPage('21');
    const data = randomBytes(70_000);
    const { body, contentType } = multipart([{ name: 'file', filename: 'chunky.bin', data }]);
    let i = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (i >= body.length) return controller.close();
        const n = 1 + (i % 997);
        controller.enqueue(body.subarray(i, i + n));
        i += n;
      },
    });
    const url = `${site.baseUrl}/rest/api/content/21/child/attachment`;
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': contentType, 'X-Atlassian-Token': 'nocheck', Authorization: `JWT ${appJwt(site, 'POST', url)}` },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(200);
    expect(site.attachments('21')[0].sha256).toBe(sha256Hex(data));
  });
});

describe('site attachment limit and fileSize as string', () => {
  it('answers 404 for a file above siteMaxAttachmentBytes and stores none of the request', async () => {
    const ci = await start({ siteMaxAttachmentBytes: 1000 });
    const site = ci.site();
    site.addPage('1');
    const res = await upload(site, '1', [
      { name: 'file', filename: 'small.txt', data: 'x' },
      { name: 'file', filename: 'big.bin', data: Buffer.alloc(1001) },
    ]);
    expect(res.status).toBe(404);
    expect((await res.json()).statusCode).toBe(404);
    expect(site.attachments('1')).toHaveLength(0);
    expect((await upload(site, '1', [{ name: 'file', filename: 'exact.bin', data: Buffer.alloc(1000) }])).status).toBe(200);
  });

  it('can answer extensions.fileSize as a string', async () => {
    const ci = await start({ fileSizeAsString: true });
    const site = ci.site();
    site.addPage('1');
    const json = (await (await upload(site, '1', [{ name: 'file', filename: 'a.txt', data: 'hello' }])).json()) as ContentArray;
    expect(json.results[0].extensions.fileSize).toBe('5');
    expect(site.attachments('1')[0].fileSize).toBe(5);
  });
});

describe('attachment lookup and download', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('5');
    site.addPage('6');
    await upload(site, '5', [
      { name: 'file', filename: 'a.txt', contentType: 'text/plain', data: 'AAA' },
      { name: 'file', filename: 'b.txt', data: 'B' },
    ]);
  });

  it('GET ?filename= returns matching attachments, empty results otherwise', async () => {
    const hit = await listAttachments(site, '5', 'a.txt');
    expect(hit.status).toBe(200);
    const json = (await hit.json()) as ContentArray;
    expect(json.size).toBe(1);
    expect(json.results[0]).toMatchObject({ title: 'a.txt', type: 'attachment', extensions: { fileSize: 3, mediaType: 'text/plain' } });
    expect(json._links.base).toBe(site.baseUrl);
    const miss = (await (await listAttachments(site, '5', 'zzz.txt')).json()) as ContentArray;
    expect(miss).toMatchObject({ results: [], size: 0 });
    const all = (await (await listAttachments(site, '5')).json()) as ContentArray;
    expect(all.results.map((r) => r.title)).toEqual(['a.txt', 'b.txt']);
    expect(((await (await listAttachments(site, '6', 'a.txt')).json()) as ContentArray).size).toBe(0);
  });

  it('GET of an unknown page is 404, and it needs auth', async () => {
    expect((await listAttachments(site, '999', 'a.txt')).status).toBe(404);
    expect((await fetch(`${site.baseUrl}/rest/api/content/5/child/attachment`)).status).toBe(401);
  });

  it('downloads the stored bytes via the _links.download path', async () => {
    const json = (await (await listAttachments(site, '5', 'a.txt')).json()) as ContentArray;
    const res = await fetch(`${json._links.base}${json.results[0]._links.download}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain');
    expect(await res.text()).toBe('AAA');
    expect((await fetch(`${site.baseUrl}/download/attachments/5/nope.txt`)).status).toBe(404);
    expect((await fetch(`${site.baseUrl}/download/attachments/77/a.txt`)).status).toBe(404);
  });
});

describe('routing and robustness', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('1');
  });

  it('unknown routes get 404 JSON', async () => {
    for (const path of ['/nope', `/sites/default/wiki/rest/api/space`, '/sites/default/wiki', '/sites/unknown-site/wiki/rest/api/content/1/child/attachment']) {
      const res = await fetch(`${ci.origin}${path}`);
      expect(res.status).toBe(404);
      expect((await res.json()).statusCode).toBe(404);
    }
  });

  it('GET with a body is refused with 403 (as Atlassian does)', async () => {
    const path = '/sites/default/wiki/rest/api/content/1/child/attachment';
    const url = `${ci.origin}${path}`;
    const res = await rawRequest(ci.origin, {
      method: 'GET',
      path,
      headers: { Authorization: `JWT ${appJwt(site, 'GET', url)}`, 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(403);
  });

  it('survives bad input', async () => {
    const bad = [
      { method: 'GET', path: '/sites/default/wiki/download/attachments/1/%E0%A4%A' },
      { method: 'POST', path: '/sites/default/wiki/rest/api/content/%ZZ/child/attachment', headers: { Authorization: 'JWT x' } },
      { method: 'POST', path: '/sites/default/wiki/rest/api/content/1/permission/check', headers: { Authorization: 'JWT a.b.c' } },
      { method: 'POST', path: '/sites/default/wiki/rest/api/content/1/permission/check', headers: { Authorization: 'Basic Zm9vOmJhcg==' } },
      { method: 'DELETE', path: '/sites/default/wiki/rest/api/content/1/child/attachment' },
    ];
    for (const b of bad) {
      const res = await rawRequest(ci.origin, b);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(JSON.parse(res.body).statusCode).toBe(res.status);
    }
    expect((await permissionCheck(site, '1', { subject: { type: 'user', identifier: 'a' }, operation: 'read' })).status).toBe(200);
  });

  it('turns an exception inside a handler into 500 JSON', async () => {
    const server = createServer((_req, res) => {
      void runHandler(res, async () => {
        throw new TypeError('boom');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({ statusCode: 500, message: expect.stringContaining('boom') });
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('records every request with path, query, auth kind, status and site', async () => {
    ci.requests.length = 0;
    await listAttachments(site, '1', 'x y.txt');
    await fetch(`${ci.origin}/elsewhere?a=1`, { headers: { Authorization: 'Bearer t' } });
    await fetch(`${site.baseUrl}/rest/api/content/1/child/attachment`, { headers: { Authorization: 'Basic x' } });
    await fetch(`${ci.installKeysUrl}/${ci.installKey.kid}`);
    expect(ci.requests).toEqual([
      { method: 'GET', path: '/sites/default/wiki/rest/api/content/1/child/attachment', query: { filename: 'x y.txt' }, authKind: 'jwt', status: 200, siteName: 'default' },
      { method: 'GET', path: '/elsewhere', query: { a: '1' }, authKind: 'bearer', status: 404 },
      { method: 'GET', path: '/sites/default/wiki/rest/api/content/1/child/attachment', query: {}, authKind: 'other', status: 401, siteName: 'default' },
      { method: 'GET', path: `/install-keys/${ci.installKey.kid}`, query: {}, authKind: 'none', status: 200 },
    ]);
  });
});

describe('failNext fault injection', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('1');
  });
  beforeEach(() => {
    ci.requests.length = 0;
  });

  it('answers matching requests with the given status, headers and body, `times` times', async () => {
    ci.failNext({ method: 'post', pathIncludes: '/child/attachment', status: 429, headers: { 'Retry-After': '3' }, body: { message: 'slow down' }, times: 2 });
    const file = [{ name: 'file', filename: 'a.txt', data: Buffer.alloc(100_000, 7) }];
    const get = await listAttachments(site, '1'); // other method: unaffected
    expect(get.status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const res = await upload(site, '1', file);
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('3');
      expect(await res.json()).toEqual({ message: 'slow down' });
    }
    expect(site.attachments('1')).toHaveLength(0);
    expect((await upload(site, '1', file)).status).toBe(200);
    expect(ci.requests.map((r) => [r.method, r.status, r.injected ?? false])).toEqual([
      ['GET', 200, false],
      ['POST', 429, true],
      ['POST', 429, true],
      ['POST', 200, false],
    ]);
  });

  it('defaults to a Confluence-style JSON error and can delay the answer', async () => {
    ci.failNext({ pathIncludes: '/permission/check', status: 503, delayMs: 300 });
    const t0 = Date.now();
    const res = await permissionCheck(site, '1', { subject: { type: 'user', identifier: 'a' }, operation: 'read' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ statusCode: 503, message: expect.any(String) });
  });

  it('can reset the connection instead of answering', async () => {
    ci.failNext({ method: 'PUT', status: 0, resetConnection: true });
    await expect(upload(site, '1', [{ name: 'file', filename: 'r.txt', data: 'x' }], { method: 'PUT' })).rejects.toThrow();
    expect(ci.requests[0]).toMatchObject({ method: 'PUT', status: 0, reset: true, injected: true });
    expect(site.attachments('1').find((a) => a.title === 'r.txt')).toBeUndefined();
    // The server keeps working.
    expect((await upload(site, '1', [{ name: 'file', filename: 'r.txt', data: 'x' }], { method: 'PUT' })).status).toBe(200);
  });
});

describe('bytesPerSecond throttling', () => {
  it('reads a 4 MiB upload at 12.5 MB/s in at least ~80% of 335 ms', async () => {
    const rate = 12_500_000;
    const ci = await start({ bytesPerSecond: rate });
    const site = ci.site();
    site.addPage('1');
    const data = randomBytes(4 * 1024 * 1024);
    const t0 = process.hrtime.bigint();
    const res = await upload(site, '1', [{ name: 'file', filename: 'big.bin', data }]);
    const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(res.status).toBe(200);
    expect(site.attachments('1')[0].sha256).toBe(sha256Hex(data));
    const expectedMs = (data.length / rate) * 1000;
    expect(elapsedMs).toBeGreaterThanOrEqual(0.8 * expectedMs);
    expect(elapsedMs).toBeLessThan(5 * expectedMs);
  });

  it('does not throttle non-upload requests', async () => {
    const ci = await start({ bytesPerSecond: 1000 });
    const site = ci.site();
    site.addPage('1');
    const t0 = Date.now();
    const res = await permissionCheck(site, '1', { subject: { type: 'user', identifier: 'a'.repeat(20_000) }, operation: 'read' });
    expect(res.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(2000); // 20 kB at 1 kB/s would take 20 s
  });
});

describe('MultipartParser (streaming, strict)', () => {
  function parseInChunks(body: Buffer, boundary: string, chunkSize: number) {
    const parts: Array<PartInfo & { data: Buffer }> = [];
    let cur: Buffer[] = [];
    const parser = new MultipartParser(boundary, {
      onPartStart: (p) => {
        parts.push({ ...p, data: Buffer.alloc(0) });
        cur = [];
      },
      onPartData: (c) => cur.push(Buffer.from(c)),
      onPartEnd: () => {
        parts[parts.length - 1].data = Buffer.concat(cur);
      },
    });
    for (let i = 0; i < body.length; i += chunkSize) parser.write(body.subarray(i, i + chunkSize));
    parser.end();
    return parts;
  }

  it('gives identical results for every chunk size, including data that resembles the boundary', () => {
    const tricky = Buffer.from('\r\n--B\r\n--BB-\r\n-\r\n--', 'latin1');
    const { body } = multipart(
      [
        { name: 'file', filename: UTF8_NAME, contentType: 'application/x', data: tricky },
        { name: 'comment', data: '' },
      ],
      'BBB',
    );
    for (const size of [1, 2, 3, 7, 64, body.length]) {
      const parts = parseInChunks(body, 'BBB', size);
      expect(parts.map((p) => [p.name, p.filename, p.contentType, p.data.toString('latin1')])).toEqual([
        ['file', UTF8_NAME, 'application/x', tricky.toString('latin1')],
        ['comment', undefined, undefined, ''],
      ]);
    }
  });

  it('allows a preamble and epilogue, decodes filename* and quoted-pair escapes', () => {
    const body = Buffer.from(
      'preamble\r\n--X\r\nContent-Disposition: form-data; name="file"; filename="a\\"b.txt"\r\n\r\n1\r\n' +
        "--X\r\ncontent-disposition: FORM-DATA; name=file; filename*=UTF-8''%E6%9D%B1.txt\r\n\r\n2\r\n--X--\r\nepilogue",
    );
    const parts = parseInChunks(body, 'X', 5);
    expect(parts.map((p) => p.filename)).toEqual(['a"b.txt', '東.txt']);
  });

  it('rejects bad boundaries and a missing close delimiter', () => {
    expect(() => new MultipartParser('', { onPartStart() {}, onPartData() {}, onPartEnd() {} })).toThrow(MultipartError);
    expect(() => parseInChunks(Buffer.from('--X\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--X\r\n'), 'X', 4)).toThrow(
      /ended before the close delimiter/,
    );
  });
});

// ---------------------------------------------------------------------------------------------------------
// OAuth 2.0 JWT-bearer grant (act as user), GET content, and the newer fault injection modes

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** An assertion as atlassian-oauth2 / the relay build it: aud = the authorization server's origin. */
function assertionFor(
  ci: ConfluenceStandIn,
  site: Site,
  accountId: string,
  claims: Record<string, unknown> = {},
  key = site.sharedSecret,
  alg = SymmetricAlgorithm.HS256,
): string {
  const iat = nowSec();
  const payload: Record<string, unknown> = {
    iss: `urn:atlassian:connect:clientid:${site.oauthClientId}`,
    sub: `urn:atlassian:connect:useraccountid:${accountId}`,
    tnt: site.baseUrl,
    aud: new URL(ci.oauthTokenUrl).origin,
    iat,
    exp: iat + 60,
    ...claims,
  };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return encodeSymmetric(payload, key, alg);
}

function requestToken(
  ci: ConfluenceStandIn,
  form: Record<string, string> | string,
  contentType = 'application/x-www-form-urlencoded',
  urlSuffix = '',
): Promise<Response> {
  return fetch(`${ci.oauthTokenUrl}${urlSuffix}`, {
    method: 'POST',
    headers: { 'Content-Type': contentType, Accept: 'application/json' },
    body: typeof form === 'string' ? form : new URLSearchParams(form).toString(),
  });
}

interface TokenJson {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope: string;
}

async function userToken(ci: ConfluenceStandIn, site: Site, accountId: string, scope?: string): Promise<string> {
  const form: Record<string, string> = { grant_type: GRANT_TYPE, assertion: assertionFor(ci, site, accountId) };
  if (scope !== undefined) form.scope = scope;
  const res = await requestToken(ci, form);
  expect(res.status).toBe(200);
  return ((await res.json()) as TokenJson).access_token;
}

async function getContent(site: Site, pageId: string, auth?: string | null): Promise<Response> {
  const url = `${site.baseUrl}/rest/api/content/${pageId}`;
  const headers: Record<string, string> = {};
  if (auth !== null) headers.Authorization = auth ?? `JWT ${appJwt(site, 'GET', url)}`;
  return fetch(url, { headers });
}

describe('OAuth 2.0 JWT-bearer token endpoint', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  let other: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site('tok');
    other = ci.site('tok-other');
    site.addPage('1', { editors: ['alice'] });
    other.addPage('1');
  });
  beforeEach(() => {
    ci.requests.length = 0;
  });

  it('is served at oauthTokenUrl; the installed callback hands over the oauthClientId', () => {
    expect(ci.oauthTokenUrl).toBe(`${ci.origin}/oauth2/token`);
    const payload = JSON.parse(site.installRequest({ relayBaseUrl: 'https://relay.example.com' }).body);
    expect(payload.oauthClientId).toBe(site.oauthClientId);
    expect(site.oauthClientId).not.toBe(other.oauthClientId);
    expect(site.oauthClientId.length).toBeGreaterThan(10);
  });

  it('issues a bearer token for a good assertion, with the default scopes and lifetime', async () => {
    const before = site.tokenRequests;
    const assertion = assertionFor(ci, site, 'alice');
    const res = await requestToken(ci, { grant_type: GRANT_TYPE, assertion });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const json = (await res.json()) as TokenJson;
    expect(json).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 900, scope: 'READ WRITE ACT_AS_USER' });
    expect(json.access_token.length).toBeGreaterThanOrEqual(32);
    expect(site.tokenRequests).toBe(before + 1);
    expect(ci.requests).toEqual([{ method: 'POST', path: '/oauth2/token', query: {}, authKind: 'none', status: 200 }]);
    expect(JSON.stringify(ci.requests)).not.toContain(assertion);
    expect(JSON.stringify(ci.requests)).not.toContain(json.access_token);
    // A second request gets a different token.
    expect(await userToken(ci, site, 'alice')).not.toBe(json.access_token);
  });

  it('echoes a requested scope ("+" is a space in form encoding) and honours tokenLifetimeSeconds', async () => {
    const s = ci.site('tok-lifetime');
    s.tokenLifetimeSeconds = 120;
    const form = `grant_type=${encodeURIComponent(GRANT_TYPE)}&assertion=${assertionFor(ci, s, 'x')}&scope=READ+WRITE`;
    const res = await requestToken(ci, form, 'application/x-www-form-urlencoded; charset=UTF-8');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ expires_in: 120, scope: 'READ WRITE' });
  });

  it('accepts aud with a trailing slash, and as an array', async () => {
    for (const aud of [`${ci.origin}/`, [ci.origin]]) {
      const res = await requestToken(ci, { grant_type: GRANT_TYPE, assertion: assertionFor(ci, site, 'alice', { aud }) });
      expect(res.status).toBe(200);
    }
  });

  const badAssertions: Array<[string, () => string]> = [
    ['a wrong signing secret', () => assertionFor(ci, site, 'alice', {}, 'not-the-secret')],
    ["another site's secret", () => assertionFor(ci, site, 'alice', {}, other.sharedSecret)],
    ['an unknown oauthClientId in iss', () => assertionFor(ci, site, 'alice', { iss: 'urn:atlassian:connect:clientid:nobody' })],
    ['a bare oauthClientId as iss', () => assertionFor(ci, site, 'alice', { iss: site.oauthClientId })],
    ['the clientKey as iss', () => assertionFor(ci, site, 'alice', { iss: site.clientKey })],
    ['no iss', () => assertionFor(ci, site, 'alice', { iss: undefined })],
    ['a bare accountId as sub', () => assertionFor(ci, site, 'alice', { sub: 'alice' })],
    ['the deprecated userkey sub', () => assertionFor(ci, site, 'alice', { sub: 'urn:atlassian:connect:userkey:alice' })],
    ['an empty accountId', () => assertionFor(ci, site, 'alice', { sub: 'urn:atlassian:connect:useraccountid:' })],
    ['no sub', () => assertionFor(ci, site, 'alice', { sub: undefined })],
    ["another site's baseUrl as tnt", () => assertionFor(ci, site, 'alice', { tnt: other.baseUrl })],
    ['tnt with a trailing slash', () => assertionFor(ci, site, 'alice', { tnt: `${site.baseUrl}/` })],
    ['no tnt', () => assertionFor(ci, site, 'alice', { tnt: undefined })],
    ['the production authorization server as aud', () => assertionFor(ci, site, 'alice', { aud: 'https://oauth-2-authorization-server.services.atlassian.com' })],
    ['the token URL as aud', () => assertionFor(ci, site, 'alice', { aud: ci.oauthTokenUrl })],
    ['the site baseUrl as aud', () => assertionFor(ci, site, 'alice', { aud: site.baseUrl })],
    ['no aud', () => assertionFor(ci, site, 'alice', { aud: undefined })],
    ['exp - iat = 61 s', () => assertionFor(ci, site, 'alice', { iat: nowSec(), exp: nowSec() + 61 })],
    ['exp - iat = 61 s with iat in the past', () => assertionFor(ci, site, 'alice', { iat: nowSec() - 31, exp: nowSec() + 30 })],
    ['an expired assertion', () => assertionFor(ci, site, 'alice', { iat: nowSec() - 70, exp: nowSec() - 10 })],
    ['exp = now - 1', () => assertionFor(ci, site, 'alice', { iat: nowSec() - 59, exp: nowSec() - 1 })],
    ['no exp', () => assertionFor(ci, site, 'alice', { exp: undefined })],
    ['no iat', () => assertionFor(ci, site, 'alice', { iat: undefined })],
    ['exp before iat', () => assertionFor(ci, site, 'alice', { iat: nowSec() + 50, exp: nowSec() + 40 })],
    ['HS512', () => assertionFor(ci, site, 'alice', {}, site.sharedSecret, SymmetricAlgorithm.HS512)],
    ['alg none', () => {
      const seg = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const iat = nowSec();
      const claims = decodeSymmetric(assertionFor(ci, site, 'alice'), site.sharedSecret, SymmetricAlgorithm.HS256);
      return `${seg({ alg: 'none', typ: 'JWT' })}.${seg({ ...claims, aud: ci.origin, iat, exp: iat + 60 })}.`;
    }],
    ['RS256', () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const iat = nowSec();
      const claims = {
        iss: `urn:atlassian:connect:clientid:${site.oauthClientId}`,
        sub: 'urn:atlassian:connect:useraccountid:alice',
        tnt: site.baseUrl,
        aud: ci.origin,
        iat,
        exp: iat + 60,
      };
      return encodeAsymmetric(claims, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), AsymmetricAlgorithm.RS256);
    }],
    ['garbage', () => 'not.a.jwt'],
  ];
  it.each(badAssertions)('answers 400 invalid_grant for %s and issues nothing', async (_label, make) => {
    const tokensBefore = site.tokenRequests;
    const iss = (() => {
      try {
        return JSON.parse(Buffer.from(make().split('.')[1], 'base64url').toString()).iss;
      } catch {
        return undefined;
      }
    })();
    const res = await requestToken(ci, { grant_type: GRANT_TYPE, assertion: make() });
    expect(res.status).toBe(400);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const json = await res.json();
    expect(json).toEqual({ error: 'invalid_grant', error_description: expect.any(String) });
    expect(json.error_description.length).toBeGreaterThan(5);
    // Counted for the site whenever iss names its oauthClientId, whether or not the assertion is valid.
    const namesSite = iss === `urn:atlassian:connect:clientid:${site.oauthClientId}`;
    expect(site.tokenRequests).toBe(tokensBefore + (namesSite ? 1 : 0));
    expect(ci.requests).toEqual([{ method: 'POST', path: '/oauth2/token', query: {}, authKind: 'none', status: 400 }]);
  });

  it('names the defect in error_description', async () => {
    const descriptionFor = async (claims: Record<string, unknown>, key?: string) =>
      ((await (await requestToken(ci, { grant_type: GRANT_TYPE, assertion: assertionFor(ci, site, 'alice', claims, key) })).json()) as {
        error_description: string;
      }).error_description;
    expect(await descriptionFor({}, 'wrong')).toMatch(/signature/i);
    expect(await descriptionFor({ tnt: 'https://x.atlassian.net/wiki' })).toMatch(/tnt/);
    expect(await descriptionFor({ aud: 'https://elsewhere' })).toMatch(/aud/);
    expect(await descriptionFor({ exp: nowSec() + 120 })).toMatch(/lifetime/);
    expect(await descriptionFor({ iat: nowSec() - 100, exp: nowSec() - 50 })).toMatch(/expired/);
  });

  it('refuses other grant types, malformed requests and unknown scopes', async () => {
    const assertion = assertionFor(ci, site, 'alice');
    const cases: Array<[Promise<Response>, string]> = [
      [requestToken(ci, { grant_type: 'client_credentials', assertion }), 'unsupported_grant_type'],
      [requestToken(ci, { grant_type: 'urn:ietf:params:oauth:grant-type:saml2-bearer', assertion }), 'unsupported_grant_type'],
      [requestToken(ci, { assertion }), 'invalid_request'],
      [requestToken(ci, { grant_type: GRANT_TYPE }), 'invalid_request'],
      [requestToken(ci, JSON.stringify({ grant_type: GRANT_TYPE, assertion }), 'application/json'), 'invalid_request'],
      [requestToken(ci, `grant_type=${encodeURIComponent(GRANT_TYPE)}&assertion=${assertion}&assertion=${assertion}`), 'invalid_request'],
      [requestToken(ci, { grant_type: GRANT_TYPE }, undefined, `?assertion=${assertion}`), 'invalid_request'],
      [requestToken(ci, { grant_type: GRANT_TYPE, assertion, scope: 'read write' }), 'invalid_scope'],
      [requestToken(ci, { grant_type: GRANT_TYPE, assertion, scope: 'READ,WRITE' }), 'invalid_scope'],
    ];
    for (const [pending, error] of cases) {
      const res = await pending;
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error, error_description: expect.any(String) });
    }
    // An assertion sent in the URL is not recorded either.
    expect(JSON.stringify(ci.requests)).not.toContain(assertion);
    expect(ci.requests.find((r) => r.query.assertion !== undefined)?.query.assertion).toBe('[redacted]');
    expect((await fetch(ci.oauthTokenUrl)).status).toBe(405);
  });

  it('a token acts as the user: uploads are recorded as that user', async () => {
    const token = await userToken(ci, site, 'alice');
    const res = await upload(site, '1', [{ name: 'file', filename: 'alice.txt', data: 'from alice' }], { auth: `Bearer ${token}` });
    expect(res.status).toBe(200);
    const json = (await res.json()) as ContentArray;
    expect(json.results[0].version.by).toMatchObject({ accountId: 'alice', accountType: 'atlassian' });
    expect(site.attachments('1').find((a) => a.title === 'alice.txt')?.createdBy).toBe('alice');
    const rec = ci.requests.find((r) => r.path.endsWith('/child/attachment'));
    expect(rec).toMatchObject({ authKind: 'bearer', accountId: 'alice', status: 200, siteName: 'tok' });
  });

  it("a non-editor's token gets 403 on upload but may read", async () => {
    const token = await userToken(ci, site, 'bob');
    const res = await upload(site, '1', [{ name: 'file', filename: 'bob.txt', data: 'x' }], { auth: `Bearer ${token}` });
    expect(res.status).toBe(403);
    expect((await res.json()).statusCode).toBe(403);
    expect(site.attachments('1').find((a) => a.title === 'bob.txt')).toBeUndefined();
    expect((await listAttachments(site, '1', 'alice.txt', `Bearer ${token}`)).status).toBe(200);
    expect((await getContent(site, '1', `Bearer ${token}`)).status).toBe(200);
  });

  it('a READ-only token may read but not upload, even for an editor', async () => {
    const token = await userToken(ci, site, 'alice', 'READ');
    expect((await upload(site, '1', [{ name: 'file', filename: 'ro.txt', data: 'x' }], { auth: `Bearer ${token}` })).status).toBe(403);
    expect((await listAttachments(site, '1', 'alice.txt', `Bearer ${token}`)).status).toBe(200);
    const writeOnly = await userToken(ci, site, 'alice', 'WRITE'); // WRITE implies READ
    expect((await listAttachments(site, '1', 'alice.txt', `Bearer ${writeOnly}`)).status).toBe(200);
    const actAsUserOnly = await userToken(ci, site, 'alice', 'ACT_AS_USER');
    expect((await listAttachments(site, '1', 'alice.txt', `Bearer ${actAsUserOnly}`)).status).toBe(403);
  });

  it("a token only works on its own site", async () => {
    const token = await userToken(ci, site, 'alice');
    other.acceptBearer('something-else', 'z'); // so the site accepts bearer tokens at all
    const res = await upload(other, '1', [{ name: 'file', filename: 'x.txt', data: 'x' }], { auth: `Bearer ${token}` });
    expect(res.status).toBe(401);
  });

  it('expireBearerTokens: every issued token answers 401 token expired; new ones work', async () => {
    const s = ci.site('tok-expire');
    s.addPage('1');
    const token = await userToken(ci, s, 'alice');
    const file = [{ name: 'file', filename: 'a.txt', data: 'x' }];
    expect((await upload(s, '1', file, { auth: `Bearer ${token}`, method: 'PUT' })).status).toBe(200);
    s.expireBearerTokens();
    const expired = await upload(s, '1', file, { auth: `Bearer ${token}`, method: 'PUT' });
    expect(expired.status).toBe(401);
    expect(await expired.json()).toEqual({ statusCode: 401, message: 'token expired' });
    const list = await listAttachments(s, '1', 'a.txt', `Bearer ${token}`);
    expect(list.status).toBe(401);
    expect(s.attachments('1')[0].version).toBe(1);
    const fresh = await userToken(ci, s, 'alice');
    expect((await upload(s, '1', file, { auth: `Bearer ${fresh}`, method: 'PUT' })).status).toBe(200);
    expect(s.attachments('1')[0].version).toBe(2);
  });

  it('tokens expire after tokenLifetimeSeconds', async () => {
    const s = ci.site('tok-short');
    s.addPage('1');
    s.tokenLifetimeSeconds = 1;
    const res = await requestToken(ci, { grant_type: GRANT_TYPE, assertion: assertionFor(ci, s, 'alice') });
    const json = (await res.json()) as TokenJson;
    expect(json.expires_in).toBe(1);
    expect((await getContent(s, '1', `Bearer ${json.access_token}`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    const late = await getContent(s, '1', `Bearer ${json.access_token}`);
    expect(late.status).toBe(401);
    expect((await late.json()).message).toBe('token expired');
  });

  it('acceptBearer can register tokens with a lifetime and scopes', async () => {
    const s = ci.site('tok-manual');
    s.addPage('1');
    s.acceptBearer('ro', 'alice', { scopes: ['READ'] });
    s.acceptBearer('gone', 'alice', { expiresInSeconds: 0 });
    expect((await getContent(s, '1', 'Bearer ro')).status).toBe(200);
    expect((await upload(s, '1', [{ name: 'file', filename: 'a.txt', data: 'x' }], { auth: 'Bearer ro' })).status).toBe(403);
    expect((await (await getContent(s, '1', 'Bearer gone')).json()).message).toBe('token expired');
    expect((await (await getContent(s, '1', 'Bearer unknown')).json()).message).toBe('unknown bearer token');
  });

  it('failNext works on the token endpoint, and injected answers still count as token requests', async () => {
    const before = site.tokenRequests;
    ci.failNext({ pathIncludes: '/oauth2/token', status: 503, headers: { 'Retry-After': '2' } });
    const res = await requestToken(ci, { grant_type: GRANT_TYPE, assertion: assertionFor(ci, site, 'alice') });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    ci.failNext({ pathIncludes: '/oauth2/token', resetConnection: true });
    await expect(requestToken(ci, { grant_type: GRANT_TYPE, assertion: assertionFor(ci, site, 'alice') })).rejects.toThrow();
    expect((await requestToken(ci, { grant_type: GRANT_TYPE, assertion: assertionFor(ci, site, 'alice') })).status).toBe(200);
    expect(site.tokenRequests).toBe(before + 3);
    expect(ci.requests.map((r) => [r.path, r.status, r.injected ?? false, r.reset ?? false])).toEqual([
      ['/oauth2/token', 503, true, false],
      ['/oauth2/token', 0, true, true],
      ['/oauth2/token', 200, false, false],
    ]);
  });

  it('passThrough + resetConnection on the token endpoint issues a token the client never sees', async () => {
    const s = ci.site('tok-lost');
    ci.failNext({ pathIncludes: '/oauth2/token', passThrough: true, resetConnection: true });
    await expect(requestToken(ci, { grant_type: GRANT_TYPE, assertion: assertionFor(ci, s, 'alice') })).rejects.toThrow();
    expect(s.tokenRequests).toBe(1);
  });
});

describe('GET /rest/api/content/{id}', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('42');
    site.addPage('43', { title: 'Quarterly report', editors: [] });
  });

  it('answers a known page with app JWT', async () => {
    const res = await getContent(site, '42');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      id: '42',
      type: 'page',
      status: 'current',
      title: 'Page 42',
      _links: {
        webui: '/pages/viewpage.action?pageId=42',
        self: `${site.baseUrl}/rest/api/content/42`,
        base: site.baseUrl,
        context: site.contextPath,
      },
    });
    expect(((await (await getContent(site, '43')).json()) as { title: string }).title).toBe('Quarterly report');
  });

  it('answers with a user token, even for users who may not edit', async () => {
    const token = await userToken(ci, site, 'reader');
    const res = await getContent(site, '43', `Bearer ${token}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: '43', type: 'page' });
  });

  it('404 for an unknown or removed page; 401 without auth; 405 for other methods', async () => {
    const unknown = await getContent(site, '999');
    expect(unknown.status).toBe(404);
    expect((await unknown.json()).statusCode).toBe(404);
    site.addPage('44');
    expect((await getContent(site, '44')).status).toBe(200);
    site.removePage('44');
    expect((await getContent(site, '44')).status).toBe(404);
    expect((await getContent(site, '42', null)).status).toBe(401);
    const url = `${site.baseUrl}/rest/api/content/42`;
    const del = await fetch(url, { method: 'DELETE', headers: { Authorization: `JWT ${appJwt(site, 'DELETE', url)}` } });
    expect(del.status).toBe(405);
  });

  it('tells a removed page apart from an attachment over the site limit (both 404 on upload)', async () => {
    const small = await start({ siteMaxAttachmentBytes: 10 });
    const s = small.site();
    s.addPage('1');
    expect((await upload(s, '1', [{ name: 'file', filename: 'big.bin', data: Buffer.alloc(11) }])).status).toBe(404);
    expect((await getContent(s, '1')).status).toBe(200);
    s.removePage('1');
    expect((await upload(s, '1', [{ name: 'file', filename: 'small.bin', data: 'x' }])).status).toBe(404);
    expect((await getContent(s, '1')).status).toBe(404);
  });
});

describe('attachment lookup by filename (for upserts and lost answers)', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('1', { editors: ['alice'] });
    await upload(site, '1', [{ name: 'file', filename: 'doc.txt', data: 'one' }]);
    await upload(site, '1', [{ name: 'file', filename: 'doc.txt', data: 'two!!' }], { method: 'PUT' });
    await upload(site, '1', [{ name: 'file', filename: 'Doc.txt', data: 'x' }]);
    await upload(site, '1', [{ name: 'file', filename: UTF8_NAME, data: 'u' }]);
  });

  it('returns exactly the attachment with that title, current version and size', async () => {
    const json = (await (await listAttachments(site, '1', 'doc.txt')).json()) as ContentArray;
    expect(json.size).toBe(1);
    expect(json.results).toHaveLength(1);
    expect(json.results[0]).toMatchObject({ title: 'doc.txt', type: 'attachment', version: { number: 2 }, extensions: { fileSize: 5 } });
    expect(json.results[0].id).toBe(site.attachments('1').find((a) => a.title === 'doc.txt')?.id);
    for (const near of ['doc', 'doc.txt ', 'DOC.TXT', 'oc.txt']) {
      expect(((await (await listAttachments(site, '1', near)).json()) as ContentArray).size).toBe(0);
    }
    const utf8 = (await (await listAttachments(site, '1', UTF8_NAME)).json()) as ContentArray;
    expect(utf8.results.map((r) => r.title)).toEqual([UTF8_NAME]);
  });

  it('is readable with app JWT and with any user token (no edit right needed)', async () => {
    const editor = await userToken(ci, site, 'alice');
    const reader = await userToken(ci, site, 'bob');
    for (const auth of [undefined, `Bearer ${editor}`, `Bearer ${reader}`]) {
      const res = await listAttachments(site, '1', 'Doc.txt', auth);
      expect(res.status).toBe(200);
      const json = (await res.json()) as ContentArray;
      expect(json.results).toHaveLength(1);
      expect(json.results[0]).toMatchObject({ title: 'Doc.txt', version: { number: 1 }, extensions: { fileSize: 1 } });
    }
  });
});

describe('failNext: lost connections mid-body and lost answers', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site();
    site.addPage('1');
  });
  beforeEach(() => {
    ci.requests.length = 0;
  });

  it('resetAfterBytes: resets the connection mid-body and stores nothing', async () => {
    ci.failNext({ method: 'POST', pathIncludes: '/child/attachment', resetAfterBytes: 64 * 1024 });
    const data = randomBytes(4 * 1024 * 1024);
    await expect(upload(site, '1', [{ name: 'file', filename: 'cut.bin', data }])).rejects.toThrow();
    expect(ci.requests).toHaveLength(1);
    expect(ci.requests[0]).toMatchObject({ method: 'POST', status: 0, reset: true, injected: true });
    expect(site.attachments('1')).toHaveLength(0);
    // The next attempt goes through.
    const res = await upload(site, '1', [{ name: 'file', filename: 'cut.bin', data }]);
    expect(res.status).toBe(200);
    expect(site.attachments('1')[0].sha256).toBe(sha256Hex(data));
  });

  it('resetAfterBytes: 0 resets before reading anything; a short body is reset after it was read', async () => {
    ci.failNext({ pathIncludes: '/child/attachment', resetAfterBytes: 0 });
    await expect(upload(site, '1', [{ name: 'file', filename: 'zero.bin', data: 'x' }])).rejects.toThrow();
    ci.failNext({ pathIncludes: '/child/attachment', resetAfterBytes: 10_000_000 });
    await expect(upload(site, '1', [{ name: 'file', filename: 'short.bin', data: 'x' }])).rejects.toThrow();
    expect(ci.requests.map((r) => [r.status, r.reset])).toEqual([
      [0, true],
      [0, true],
    ]);
    expect(site.attachments('1').map((a) => a.title)).toEqual(['cut.bin']);
  });

  it('stallAfterBytes: stops reading mid-body for stallMs, then stores the upload as usual', async () => {
    ci.failNext({ method: 'POST', pathIncludes: '/child/attachment', passThrough: true, stallAfterBytes: 64 * 1024, stallMs: 600 });
    const data = randomBytes(1024 * 1024);
    const t0 = Date.now();
    const res = await upload(site, '1', [{ name: 'file', filename: 'stalled.bin', data }]);
    expect(res.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    expect(site.attachments('1').find((a) => a.title === 'stalled.bin')?.sha256).toBe(sha256Hex(data));
    expect(() => ci.failNext({ stallAfterBytes: 10, stallMs: 10 })).toThrow(/passThrough/);
  });

  it('resetAfterBytes works with a throttled upload', async () => {
    const slow = await start({ bytesPerSecond: 2_000_000 });
    const s = slow.site();
    s.addPage('1');
    slow.failNext({ pathIncludes: '/child/attachment', resetAfterBytes: 300_000 });
    const t0 = Date.now();
    await expect(upload(s, '1', [{ name: 'file', filename: 'a.bin', data: Buffer.alloc(2_000_000, 1) }])).rejects.toThrow();
    // Reset after ~0.15 s of a ~1 s transfer.
    expect(Date.now() - t0).toBeLessThan(900);
    expect(s.attachments('1')).toHaveLength(0);
  });

  it('passThrough + resetConnection: the attachment IS stored but the client sees a reset', async () => {
    ci.failNext({ method: 'POST', pathIncludes: '/child/attachment', passThrough: true, resetConnection: true });
    const data = randomBytes(300_000);
    await expect(upload(site, '1', [{ name: 'file', filename: 'lost-answer.bin', data }])).rejects.toThrow();
    expect(ci.requests[0]).toMatchObject({ method: 'POST', status: 0, reset: true, injected: true });
    const stored = site.attachments('1').find((a) => a.title === 'lost-answer.bin');
    expect(stored).toMatchObject({ version: 1, fileSize: data.length, sha256: sha256Hex(data), createdBy: 'app' });
    // A retrying client finds it by filename, and a second POST of the same title is a duplicate.
    const found = (await (await listAttachments(site, '1', 'lost-answer.bin')).json()) as ContentArray;
    expect(found.results.map((r) => [r.id, r.extensions.fileSize])).toEqual([[stored?.id, data.length]]);
    expect((await upload(site, '1', [{ name: 'file', filename: 'lost-answer.bin', data }])).status).toBe(400);
  });

  it('passThrough + delayMs: stores at once, answers the real result late', async () => {
    ci.failNext({ method: 'PUT', passThrough: true, delayMs: 400 });
    const t0 = Date.now();
    const pending = upload(site, '1', [{ name: 'file', filename: 'late.txt', data: 'late' }], { method: 'PUT' });
    await new Promise((r) => setTimeout(r, 200));
    expect(site.attachments('1').find((a) => a.title === 'late.txt')?.version).toBe(1);
    expect(ci.requests[0].status).toBe(0); // answer not sent yet
    const res = await pending;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
    expect(res.status).toBe(200);
    const json = (await res.json()) as ContentArray;
    expect(json.results[0]).toMatchObject({ title: 'late.txt', version: { number: 1 } });
    expect(ci.requests[0]).toMatchObject({ status: 200, injected: true });
    expect(ci.requests[0].reset).toBeUndefined();
  });

  it('passThrough + delayMs also delays an error answer, and stores nothing then', async () => {
    ci.failNext({ passThrough: true, delayMs: 300 });
    const t0 = Date.now();
    const res = await upload(site, '404', [{ name: 'file', filename: 'x.txt', data: 'x' }]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ statusCode: 404, message: expect.any(String) });
  });

  it('passThrough works on other endpoints too', async () => {
    ci.failNext({ pathIncludes: '/download/', passThrough: true, delayMs: 200 });
    const t0 = Date.now();
    const res = await fetch(`${site.baseUrl}/download/attachments/1/late.txt`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(180);
    expect(await res.text()).toBe('late');
  });

  it('status defaults to 500; contradictory rules are refused', async () => {
    ci.failNext({ pathIncludes: '/permission/check' });
    const res = await permissionCheck(site, '1', { subject: { type: 'user', identifier: 'a' }, operation: 'read' });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ statusCode: 500, message: expect.any(String) });
    expect(() => ci.failNext({ passThrough: true, resetAfterBytes: 10 })).toThrow(/passThrough/);
    expect(() => ci.failNext({ resetAfterBytes: -1 })).toThrow(/non-negative/);
  });
});
