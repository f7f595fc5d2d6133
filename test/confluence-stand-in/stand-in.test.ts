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
