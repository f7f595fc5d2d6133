/**
 * Tests of the stand-in's Forge face: the FIT JWKS, FIT minting, and Confluence behind the API gateway
 * (`/ex/confluence/<cloudId>/wiki/rest/api/...`) with the OAuth tokens of a Forge invocation.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, verify, type JsonWebKey } from 'node:crypto';
import { SymmetricAlgorithm, createQueryStringHash, encodeSymmetric, fromMethodAndUrl } from 'atlassian-jwt';
import { startConfluenceStandIn, type ConfluenceStandIn, type Site, type StandInOptions } from './stand-in';

// ---------------------------------------------------------------------------------------------------------
// helpers

const APP_ID = 'ari:cloud:ecosystem::app/3f1c2a8e-8f6b-4b8e-9a57-0c1d2e3f4a5b';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const nowSec = () => Math.floor(Date.now() / 1000);

interface Jwk extends JsonWebKey {
  kid: string;
}

function decodePart(part: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h, c] = token.split('.');
  return { header: decodePart(h), claims: decodePart(c) };
}

async function fetchJwks(ci: ConfluenceStandIn): Promise<{ keys: Jwk[] }> {
  const res = await fetch(ci.forgeJwksUrl);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return (await res.json()) as { keys: Jwk[] };
}

/** Verifies an RS256 JWT against a JWKS the way a remote would: key by kid, node crypto only. */
function verifiesWith(token: string, jwks: { keys: Jwk[] }): boolean {
  const [h, c, s] = token.split('.');
  const header = decodePart(h);
  if (header.alg !== 'RS256') return false;
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) return false;
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  return verify('sha256', Buffer.from(`${h}.${c}`, 'ascii'), key, Buffer.from(s, 'base64url'));
}

function multipart(files: Array<{ filename: string; data: string | Buffer; contentType?: string }>): { body: Buffer; contentType: string } {
  const boundary = `----forge${randomBytes(8).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const f of files) {
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${f.filename}"\r\n` +
          `Content-Type: ${f.contentType ?? 'text/plain'}\r\n\r\n`,
      ),
      Buffer.from(f.data),
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

const bearer = (token: string | undefined) => {
  if (token === undefined) throw new Error('no token');
  return `Bearer ${token}`;
};

/** Upload through the API gateway path of `site` (or any base given). */
async function forgeUpload(
  apiBase: string,
  pageId: string,
  auth: string | null,
  files: Array<{ filename: string; data: string | Buffer }> = [{ filename: 'a.txt', data: 'hello' }],
  method: 'POST' | 'PUT' = 'POST',
): Promise<Response> {
  const mp = multipart(files);
  const headers: Record<string, string> = { 'X-Atlassian-Token': 'no-check', 'Content-Type': mp.contentType };
  if (auth !== null) headers.Authorization = auth;
  return fetch(`${apiBase}/wiki/rest/api/content/${pageId}/child/attachment`, { method, headers, body: new Uint8Array(mp.body) });
}

async function forgeGet(url: string, auth: string | null): Promise<Response> {
  return fetch(url, { headers: auth === null ? {} : { Authorization: auth } });
}

interface AttachmentJson {
  id: string;
  title: string;
  version: { number: number; by: { accountId: string; accountType: string } };
  _links: { download: string; self: string };
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

describe('Forge JWKS and FIT minting', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site('forge-fit');
  });

  it('serves the current key as a proper RS256 JWKS', async () => {
    expect(ci.forgeJwksUrl).toBe(`${ci.origin}/forge/.well-known/jwks.json`);
    const jwks = await fetchJwks(ci);
    expect(jwks.keys).toHaveLength(1);
    const [k] = jwks.keys;
    expect(k).toEqual({ kty: 'RSA', kid: ci.forgeKey.kid, alg: 'RS256', use: 'sig', n: expect.any(String), e: 'AQAB' });
    expect(k.kid).toMatch(/^forge\/invocation-token\/[0-9a-f-]{36}$/);
    // 2048-bit modulus, no private parts.
    expect(Buffer.from(k.n as string, 'base64url')).toHaveLength(256);
    expect(createPublicKey({ key: k, format: 'jwk' }).export({ type: 'spki', format: 'pem' })).toBe(ci.forgeKey.publicKeyPem);
    expect((await fetch(ci.forgeJwksUrl, { method: 'POST' })).status).toBe(405);
  });

  it('gives each site a Forge identity', () => {
    expect(site.cloudId).toMatch(UUID);
    expect(site.forgeInstallationId).toMatch(/^ari:cloud:ecosystem::installation\/[0-9a-f-]{36}$/);
    expect(site.forgeApiBaseUrl).toBe(`${ci.origin}/ex/confluence/${site.cloudId}`);
    expect(site.siteUrl).toBe(`${ci.origin}/sites/forge-fit`);
    expect(`${site.siteUrl}/wiki`).toBe(site.baseUrl);
    expect(site.forgeTokenLifetimeSeconds).toBe(3600);
    const other = ci.site('forge-fit-2');
    expect(other.cloudId).not.toBe(site.cloudId);
    expect(other.forgeInstallationId).not.toBe(site.forgeInstallationId);
  });

  it('mints a FIT that verifies against the JWKS, with the default claims of a macro invocation', async () => {
    const inv = site.forgeInvocation({ appId: APP_ID, accountId: 'alice', contentId: '123' });
    expect(verifiesWith(inv.fit, await fetchJwks(ci))).toBe(true);
    const { header, claims } = decodeJwt(inv.fit);
    expect(header).toEqual({ alg: 'RS256', kid: ci.forgeKey.kid, typ: 'JWT' });
    expect(claims).toEqual(inv.claims);
    const iat = claims.iat as number;
    expect(Math.abs(iat - nowSec())).toBeLessThanOrEqual(2);
    expect(claims).toEqual({
      iss: 'forge/invocation-token',
      aud: APP_ID,
      iat,
      nbf: iat,
      exp: iat + 25,
      jti: expect.stringMatching(UUID),
      app: {
        id: APP_ID,
        installationId: site.forgeInstallationId,
        apiBaseUrl: site.forgeApiBaseUrl,
        appVersion: '1.0.0',
        environment: { type: 'DEVELOPMENT', id: expect.stringMatching(UUID) },
        module: { type: 'xen:macro', key: 'upload-files' },
        installation: {
          id: site.forgeInstallationId,
          contexts: [{ name: `ari:cloud:confluence::site/${site.cloudId}`, apiBaseUrl: site.forgeApiBaseUrl }],
        },
      },
      context: {
        cloudId: site.cloudId,
        localId: expect.stringMatching(UUID),
        moduleKey: 'upload-files',
        siteUrl: site.siteUrl,
        extension: { type: 'macro', content: { id: '123', type: 'page' }, isEditing: true },
      },
      principal: 'alice',
    });
    expect(inv.headers).toEqual({
      authorization: `Bearer ${inv.fit}`,
      'x-forge-oauth-user': expect.stringMatching(/^[A-Za-z0-9_-]{40,}$/),
      'x-forge-oauth-system': expect.stringMatching(/^[A-Za-z0-9_-]{40,}$/),
    });
    expect(inv.headers['x-forge-oauth-user']).not.toBe(inv.headers['x-forge-oauth-system']);

    // Every invocation is fresh: new jti, new tokens; the environment stays.
    const again = site.forgeInvocation({ appId: APP_ID, accountId: 'alice', contentId: '123' });
    const c2 = decodeJwt(again.fit).claims;
    expect(c2.jti).not.toBe(claims.jti);
    expect(again.headers['x-forge-oauth-system']).not.toBe(inv.headers['x-forge-oauth-system']);
    expect((c2.app as { environment: unknown }).environment).toEqual((claims.app as { environment: unknown }).environment);
  });

  it('without accountId: no principal and no user token; without contentId: no extension', () => {
    const inv = site.forgeInvocation({ appId: APP_ID });
    const { claims } = decodeJwt(inv.fit);
    expect(claims).not.toHaveProperty('principal');
    expect(claims.context).not.toHaveProperty('extension');
    expect(Object.keys(inv.headers).sort()).toEqual(['authorization', 'x-forge-oauth-system']);
    expect(() => site.forgeInvocation({ appId: APP_ID, userToken: true })).toThrow(/accountId/);
  });

  it('token headers can be switched off', () => {
    const userOnly = site.forgeInvocation({ appId: APP_ID, accountId: 'alice', systemToken: false });
    expect(Object.keys(userOnly.headers).sort()).toEqual(['authorization', 'x-forge-oauth-user']);
    const none = site.forgeInvocation({ appId: APP_ID, accountId: 'alice', userToken: false, systemToken: false });
    expect(Object.keys(none.headers)).toEqual(['authorization']);
    expect(decodeJwt(none.fit).claims.principal).toBe('alice');
  });

  it('applies claim and header overrides, lifetime and a foreign signing key', async () => {
    const jwks = await fetchJwks(ci);
    const inv = site.forgeInvocation({
      appId: APP_ID,
      accountId: 'alice',
      contentId: '9',
      claims: {
        aud: 'ari:cloud:ecosystem::app/other',
        principal: undefined,
        'app.apiBaseUrl': 'https://evil.example/ex/confluence/x',
        'context.extension': undefined,
        'app.license': { isActive: true },
        extra: 1,
      },
      header: { typ: undefined, x5u: 'https://example.invalid' },
    });
    const { header, claims } = decodeJwt(inv.fit);
    expect(header).toEqual({ alg: 'RS256', kid: ci.forgeKey.kid, x5u: 'https://example.invalid' });
    expect(claims.aud).toBe('ari:cloud:ecosystem::app/other');
    expect(claims).not.toHaveProperty('principal');
    expect(claims.extra).toBe(1);
    const app = claims.app as Record<string, unknown>;
    expect(app.apiBaseUrl).toBe('https://evil.example/ex/confluence/x');
    expect(app.license).toEqual({ isActive: true });
    expect(app.installationId).toBe(site.forgeInstallationId); // siblings untouched
    expect(claims.context).not.toHaveProperty('extension');
    expect((claims.context as Record<string, unknown>).cloudId).toBe(site.cloudId);
    expect(verifiesWith(inv.fit, jwks)).toBe(true); // still signed with the real key

    const expired = decodeJwt(site.forgeInvocation({ appId: APP_ID, expiresInSeconds: -60 }).fit).claims;
    expect((expired.exp as number) - (expired.iat as number)).toBe(-60);
    const long = decodeJwt(site.forgeInvocation({ appId: APP_ID, expiresInSeconds: 600 }).fit).claims;
    expect((long.exp as number) - (long.iat as number)).toBe(600);

    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    const forged = site.forgeInvocation({ appId: APP_ID, privateKeyPem: privateKey });
    expect(decodeJwt(forged.fit).header.kid).toBe(ci.forgeKey.kid);
    expect(verifiesWith(forged.fit, jwks)).toBe(false);

    const otherKid = site.forgeInvocation({ appId: APP_ID, header: { kid: 'forge/invocation-token/unknown' } });
    expect(verifiesWith(otherKid.fit, jwks)).toBe(false);
  });

  it('rotateForgeKey: a new kid, the old key leaves the JWKS', async () => {
    const oldKid = ci.forgeKey.kid;
    const before = site.forgeInvocation({ appId: APP_ID });
    expect(verifiesWith(before.fit, await fetchJwks(ci))).toBe(true);

    const rotated = ci.rotateForgeKey();
    expect(rotated.kid).not.toBe(oldKid);
    expect(rotated.kid).toMatch(/^forge\/invocation-token\//);
    expect(ci.forgeKey.kid).toBe(rotated.kid);
    const jwks = await fetchJwks(ci);
    expect(jwks.keys.map((k) => k.kid)).toEqual([rotated.kid]);
    expect(verifiesWith(before.fit, jwks)).toBe(false);

    const after = site.forgeInvocation({ appId: APP_ID });
    expect(decodeJwt(after.fit).header.kid).toBe(rotated.kid);
    expect(verifiesWith(after.fit, jwks)).toBe(true);
  });
});

describe('Confluence behind the API gateway (/ex/confluence/<cloudId>/wiki)', () => {
  let ci: ConfluenceStandIn;
  let site: Site;
  let other: Site;
  beforeAll(async () => {
    ci = await start();
    site = ci.site('gw');
    other = ci.site('gw-other');
    site.addPage('10', { editors: ['alice'], title: 'Upload here' });
    other.addPage('10');
  });
  beforeEach(() => {
    ci.requests.length = 0;
  });

  it('uploads with the user token act as that user; download links are absolute under the gateway', async () => {
    const inv = site.forgeInvocation({ appId: APP_ID, accountId: 'alice', contentId: '10' });
    const res = await forgeUpload(site.forgeApiBaseUrl, '10', bearer(inv.headers['x-forge-oauth-user']), [{ filename: 'u.txt', data: 'user bytes' }]);
    expect(res.status).toBe(200);
    const json = (await res.json()) as ContentArray;
    expect(json._links).toEqual({ base: `${site.forgeApiBaseUrl}/wiki`, context: `/ex/confluence/${site.cloudId}/wiki` });
    const att = json.results[0];
    expect(att.version.by).toMatchObject({ accountId: 'alice', accountType: 'atlassian' });
    expect(att._links.self).toBe(`${site.forgeApiBaseUrl}/wiki/rest/api/content/${att.id}`);
    expect(site.attachments('10').find((a) => a.title === 'u.txt')).toMatchObject({ createdBy: 'alice', version: 1 });
    expect(other.allAttachments()).toHaveLength(0);

    expect(ci.requests[0]).toMatchObject({ method: 'POST', siteName: 'gw', authKind: 'bearer', accountId: 'alice', status: 200 });

    const downloadUrl = `${json._links.base}${att._links.download}`;
    expect(downloadUrl.startsWith(`${site.forgeApiBaseUrl}/wiki/download/attachments/10/u.txt`)).toBe(true);
    const dl = await forgeGet(downloadUrl, bearer(inv.headers['x-forge-oauth-system']));
    expect(dl.status).toBe(200);
    expect(await dl.text()).toBe('user bytes');
    expect((await forgeGet(downloadUrl, null)).status).toBe(401);

    // PUT adds a version, like on the site path.
    const put = await forgeUpload(site.forgeApiBaseUrl, '10', bearer(inv.headers['x-forge-oauth-user']), [{ filename: 'u.txt', data: 'v2' }], 'PUT');
    expect(put.status).toBe(200);
    expect(((await put.json()) as ContentArray).results[0]).toMatchObject({ id: att.id, version: { number: 2 } });
  });

  it('the user token of a non-editor gets 403 and nothing is stored', async () => {
    const inv = site.forgeInvocation({ appId: APP_ID, accountId: 'bob', contentId: '10' });
    const res = await forgeUpload(site.forgeApiBaseUrl, '10', bearer(inv.headers['x-forge-oauth-user']), [{ filename: 'bob.txt', data: 'x' }]);
    expect(res.status).toBe(403);
    expect(site.attachments('10').find((a) => a.title === 'bob.txt')).toBeUndefined();
    expect(ci.requests[0]).toMatchObject({ accountId: 'bob', status: 403 });
  });

  it('uploads with the system token act as the app, also for a non-editor invocation', async () => {
    const inv = site.forgeInvocation({ appId: APP_ID, accountId: 'bob', contentId: '10' });
    const res = await forgeUpload(site.forgeApiBaseUrl, '10', bearer(inv.headers['x-forge-oauth-system']), [{ filename: 's.txt', data: 'app bytes' }]);
    expect(res.status).toBe(200);
    const att = ((await res.json()) as ContentArray).results[0];
    expect(att.version.by).toMatchObject({ accountId: site.appAccountId, accountType: 'app' });
    expect(site.attachments('10').find((a) => a.title === 's.txt')?.createdBy).toBe('app');
    expect(ci.requests[0].accountId).toBeUndefined();
  });

  it('content, attachment lookup and permission check work with a bearer token', async () => {
    const inv = site.forgeInvocation({ appId: APP_ID });
    const system = bearer(inv.headers['x-forge-oauth-system']);
    const api = `${site.forgeApiBaseUrl}/wiki/rest/api`;

    const content = await forgeGet(`${api}/content/10`, system);
    expect(content.status).toBe(200);
    expect(await content.json()).toMatchObject({
      id: '10',
      title: 'Upload here',
      _links: { base: `${site.forgeApiBaseUrl}/wiki`, self: `${site.forgeApiBaseUrl}/wiki/rest/api/content/10` },
    });
    expect((await forgeGet(`${api}/content/404`, system)).status).toBe(404);

    const list = await forgeGet(`${api}/content/10/child/attachment?filename=s.txt`, system);
    expect(list.status).toBe(200);
    const listed = (await list.json()) as ContentArray;
    expect(listed.results.map((a) => a.title)).toEqual(['s.txt']);
    expect(listed._links.base).toBe(`${site.forgeApiBaseUrl}/wiki`);

    const check = async (identifier: string) => {
      const res = await fetch(`${api}/content/10/permission/check`, {
        method: 'POST',
        headers: { Authorization: system, 'Content-Type': 'application/json' },
        body: JSON.stringify({ subject: { type: 'user', identifier }, operation: 'update' }),
      });
      expect(res.status).toBe(200);
      return ((await res.json()) as { hasPermission: boolean }).hasPermission;
    };
    expect(await check('alice')).toBe(true);
    expect(await check('bob')).toBe(false);
    expect(ci.requests.every((r) => r.siteName === 'gw' && r.authKind === 'bearer')).toBe(true);
  });

  it('refuses tokens of another cloudId, app JWTs, Connect bearer tokens, the FIT itself, and no auth (401)', async () => {
    const mine = site.forgeInvocation({ appId: APP_ID, accountId: 'alice' });
    const theirs = other.forgeInvocation({ appId: APP_ID, accountId: 'alice' });

    const foreign = await forgeUpload(site.forgeApiBaseUrl, '10', bearer(theirs.headers['x-forge-oauth-system']));
    expect(foreign.status).toBe(401);
    expect(((await foreign.json()) as { message: string }).message).toBe('token not valid for this cloudId');
    expect((await forgeUpload(site.forgeApiBaseUrl, '10', bearer(theirs.headers['x-forge-oauth-user']))).status).toBe(401);
    // ...while they work at their own cloudId.
    expect((await forgeUpload(other.forgeApiBaseUrl, '10', bearer(theirs.headers['x-forge-oauth-system']), [{ filename: 'o.txt', data: 'x' }])).status).toBe(200);

    const url = `${site.forgeApiBaseUrl}/wiki/rest/api/content/10/child/attachment`;
    const iat = nowSec();
    const jwt = encodeSymmetric(
      { iss: 'confluence-upload-relay', iat, exp: iat + 180, qsh: createQueryStringHash(fromMethodAndUrl('POST', url), false, site.baseUrl) },
      site.sharedSecret,
      SymmetricAlgorithm.HS256,
    );
    const appJwt = await forgeUpload(site.forgeApiBaseUrl, '10', `JWT ${jwt}`);
    expect(appJwt.status).toBe(401);
    expect(((await appJwt.json()) as { message: string }).message).toMatch(/bearer/);

    site.acceptBearer('connect-token', 'alice');
    expect((await forgeUpload(site.forgeApiBaseUrl, '10', 'Bearer connect-token')).status).toBe(401);
    expect((await forgeUpload(site.forgeApiBaseUrl, '10', bearer(mine.fit))).status).toBe(401);
    expect((await forgeUpload(site.forgeApiBaseUrl, '10', null)).status).toBe(401);
    expect((await forgeGet(`${site.forgeApiBaseUrl}/wiki/rest/api/content/10`, `JWT ${jwt}`)).status).toBe(401);

    // Forge tokens are good only behind the gateway, not at the site's own baseUrl.
    const atSite = await fetch(`${site.baseUrl}/rest/api/content/10`, { headers: { Authorization: bearer(mine.headers['x-forge-oauth-system']) } });
    expect(atSite.status).toBe(401);
    expect(site.attachments('10').find((a) => a.title === 'a.txt')).toBeUndefined();
  });

  it('expired tokens get 401 token expired (forgeTokenLifetimeSeconds, expireBearerTokens)', async () => {
    site.forgeTokenLifetimeSeconds = 0;
    try {
      const inv = site.forgeInvocation({ appId: APP_ID, accountId: 'alice' });
      const res = await forgeUpload(site.forgeApiBaseUrl, '10', bearer(inv.headers['x-forge-oauth-user']));
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ statusCode: 401, message: 'token expired' });
    } finally {
      site.forgeTokenLifetimeSeconds = 3600;
    }
    const inv = site.forgeInvocation({ appId: APP_ID });
    const auth = bearer(inv.headers['x-forge-oauth-system']);
    expect((await forgeGet(`${site.forgeApiBaseUrl}/wiki/rest/api/content/10`, auth)).status).toBe(200);
    site.expireBearerTokens();
    const res = await forgeGet(`${site.forgeApiBaseUrl}/wiki/rest/api/content/10`, auth);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { message: string }).message).toBe('token expired');
    // Tokens issued later work.
    const fresh = site.forgeInvocation({ appId: APP_ID });
    expect((await forgeGet(`${site.forgeApiBaseUrl}/wiki/rest/api/content/10`, bearer(fresh.headers['x-forge-oauth-system']))).status).toBe(200);
  });

  it('an unknown cloudId is 404', async () => {
    const inv = site.forgeInvocation({ appId: APP_ID });
    const unknown = `${ci.origin}/ex/confluence/00000000-0000-4000-8000-000000000000`;
    const up = await forgeUpload(unknown, '10', bearer(inv.headers['x-forge-oauth-system']));
    expect(up.status).toBe(404);
    expect(((await up.json()) as { message: string }).message).toMatch(/cloudId/);
    expect((await forgeGet(`${unknown}/wiki/rest/api/content/10`, bearer(inv.headers['x-forge-oauth-system']))).status).toBe(404);
    expect(ci.requests.map((r) => r.siteName)).toEqual([undefined, undefined]);
    expect((await forgeGet(`${site.forgeApiBaseUrl}/rest/api/content/10`, bearer(inv.headers['x-forge-oauth-system']))).status).toBe(404);
  });

  it('uploads there honour failNext and are recorded with the site name', async () => {
    const inv = site.forgeInvocation({ appId: APP_ID });
    const auth = bearer(inv.headers['x-forge-oauth-system']);
    ci.failNext({ method: 'POST', pathIncludes: `/ex/confluence/${site.cloudId}/wiki/rest/api/content/10/child/attachment`, status: 503, headers: { 'Retry-After': '2' } });
    const injected = await forgeUpload(site.forgeApiBaseUrl, '10', auth, [{ filename: 'f.txt', data: 'x' }]);
    expect(injected.status).toBe(503);
    expect(injected.headers.get('retry-after')).toBe('2');
    expect(site.attachments('10').find((a) => a.title === 'f.txt')).toBeUndefined();

    ci.failNext({ pathIncludes: '/child/attachment', passThrough: true, resetConnection: true });
    await expect(forgeUpload(site.forgeApiBaseUrl, '10', auth, [{ filename: 'f.txt', data: 'lost answer' }])).rejects.toThrow();
    expect(site.attachments('10').find((a) => a.title === 'f.txt')?.createdBy).toBe('app');

    expect(ci.requests.map((r) => [r.siteName, r.status, r.injected ?? false, r.reset ?? false])).toEqual([
      ['gw', 503, true, false],
      ['gw', 0, true, true],
    ]);
  });
});

describe('API gateway uploads are throttled like site uploads', () => {
  it('reads a 1 MiB upload at 2 MB/s in at least ~80% of 524 ms', async () => {
    const rate = 2_000_000;
    const ci = await start({ bytesPerSecond: rate });
    const site = ci.site();
    site.addPage('1');
    const inv = site.forgeInvocation({ appId: APP_ID, accountId: 'carol' });
    const data = randomBytes(1024 * 1024);
    const t0 = process.hrtime.bigint();
    const res = await forgeUpload(site.forgeApiBaseUrl, '1', bearer(inv.headers['x-forge-oauth-user']), [{ filename: 'big.bin', data }]);
    const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(res.status).toBe(200);
    expect(site.attachments('1')[0]).toMatchObject({ fileSize: data.length, createdBy: 'carol' });
    const expectedMs = (data.length / rate) * 1000;
    expect(elapsedMs).toBeGreaterThanOrEqual(0.8 * expectedMs);
    expect(elapsedMs).toBeLessThan(8 * expectedMs);
  });
});
