import { createHmac, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { verifyForgeInvocation } from '../../functions/src/forge/invocation-token';
import { forgeKeyResolver } from '../../functions/src/forge/jwks';
import { localTokenSealer } from '../../functions/src/forge/token-sealer';
import { b64url, signRs256, tamper, unsigned } from '../helpers/jwt';

const NOW = 1_800_000_000;
const APP = 'ari:cloud:ecosystem::app/11111111-2222-3333-4444-555555555555';
const OTHER_APP = 'ari:cloud:ecosystem::app/99999999-2222-3333-4444-555555555555';
const INSTALLATION = 'ari:cloud:ecosystem::installation/aaaa';

function rsa() {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { publicKey, privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}
const jwk = (kid: string, publicKey: KeyObject, extra: Record<string, unknown> = {}) => ({ ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig', ...extra });

const signing = rsa();
const other = rsa();
const rs384Key = rsa();
const KID = `forge/invocation-token/${randomUUID()}`;
let jwks: { keys: unknown[] } = { keys: [jwk(KID, signing.publicKey), jwk('rs384-key', rs384Key.publicKey, { alg: 'RS384' })] };
let fetches = 0;
let clock = 0;
const fetchJwks = (async () => {
  fetches += 1;
  return new Response(JSON.stringify(jwks), { headers: { 'content-type': 'application/json' } });
}) as typeof fetch;

const claims = {
  iss: 'forge/invocation-token',
  aud: APP,
  iat: NOW - 2,
  nbf: NOW - 2,
  exp: NOW + 23,
  jti: 'j1',
  app: { id: APP, installationId: INSTALLATION, apiBaseUrl: 'https://api.atlassian.com/ex/confluence/cloud-1' },
  context: { cloudId: 'cloud-1', extension: { content: { id: '65538' } } },
  principal: 'account-1',
};

function verify(token: string, options: { appIds?: string[]; resolver?: ReturnType<typeof forgeKeyResolver> } = {}) {
  return verifyForgeInvocation(token, {
    config: { forgeAppIds: options.appIds ?? [APP], allowedForgeApiHosts: ['api.atlassian.com'], allowHttpTenants: false },
    resolveKey: options.resolver ?? forgeKeyResolver('https://jwks.example/jwks.json', fetchJwks, () => (clock += 1)),
    nowSeconds: () => NOW,
  });
}

const good = signRs256(claims, signing.privateKeyPem, { kid: KID });

describe('Forge Invocation Token verification', () => {
  it('accepts a good FIT and reads installation, API base, cloud, user and page from it', async () => {
    await expect(verify(good)).resolves.toEqual({
      appId: APP,
      installationId: INSTALLATION,
      apiBaseUrl: 'https://api.atlassian.com/ex/confluence/cloud-1',
      cloudId: 'cloud-1',
      accountId: 'account-1',
      contentId: '65538',
    });
  });

  const hs256 = (payload: object, secret: string | Buffer) => {
    const input = `${b64url({ alg: 'HS256', typ: 'JWT', kid: KID })}.${b64url(payload)}`;
    return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
  };
  const modulus = Buffer.from(String((signing.publicKey.export({ format: 'jwk' }) as { n: string }).n), 'base64url');
  const pem = signing.publicKey.export({ type: 'spki', format: 'pem' }).toString();

  const cases: Array<[string, () => string, string[]?]> = [
    ['alg: none', () => unsigned(claims)],
    ['HS256 keyed with the JWKS key (modulus)', () => hs256(claims, modulus)],
    ['HS256 keyed with the public key PEM', () => hs256(claims, pem)],
    ['RS512 in the header', () => signRs256(claims, signing.privateKeyPem, { kid: KID, alg: 'RS512' })],
    ['no kid', () => signRs256(claims, signing.privateKeyPem)],
    ['an unknown kid', () => signRs256(claims, signing.privateKeyPem, { kid: 'forge/invocation-token/unknown' })],
    ['a JWKS key meant for another algorithm (RS384)', () => signRs256(claims, rs384Key.privateKeyPem, { kid: 'rs384-key' })],
    ['a signature by another key under the right kid', () => signRs256(claims, other.privateKeyPem, { kid: KID })],
    ['expired', () => signRs256({ ...claims, exp: NOW - 30 }, signing.privateKeyPem, { kid: KID })],
    ['no exp', () => signRs256({ ...claims, exp: undefined }, signing.privateKeyPem, { kid: KID })],
    ['nbf in the future', () => signRs256({ ...claims, nbf: NOW + 120 }, signing.privateKeyPem, { kid: KID })],
    ['another issuer', () => signRs256({ ...claims, iss: 'someone-else' }, signing.privateKeyPem, { kid: KID })],
    ['a token for another app id', () => signRs256({ ...claims, aud: OTHER_APP }, signing.privateKeyPem, { kid: KID })],
    ['no aud', () => signRs256({ ...claims, aud: undefined }, signing.privateKeyPem, { kid: KID })],
    ['no installation', () => signRs256({ ...claims, app: { ...claims.app, installationId: undefined } }, signing.privateKeyPem, { kid: KID })],
    ['an apiBaseUrl outside ALLOWED_FORGE_API_HOSTS', () => signRs256({ ...claims, app: { ...claims.app, apiBaseUrl: 'https://evil.example.com/ex/confluence/x' } }, signing.privateKeyPem, { kid: KID })],
    ['an http apiBaseUrl', () => signRs256({ ...claims, app: { ...claims.app, apiBaseUrl: 'http://api.atlassian.com/ex/confluence/x' } }, signing.privateKeyPem, { kid: KID })],
    ['an apiBaseUrl with credentials', () => signRs256({ ...claims, app: { ...claims.app, apiBaseUrl: 'https://u:p@api.atlassian.com/ex' } }, signing.privateKeyPem, { kid: KID })],
    ['a tampered payload', () => tamper(good, { ...claims, principal: 'admin' })],
    ['a truncated token', () => good.slice(0, -12)],
    ['Forge turned off (no FORGE_APP_IDS)', () => good, []],
  ];
  for (const [name, token, appIds] of cases) {
    it(`refuses ${name} with 401`, async () => {
      await expect(verify(token(), { appIds })).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
    });
  }
});

describe('JWKS cache', () => {
  it('fetches once, refreshes on a new kid after rotation, and at most once a minute', async () => {
    let nowMs = 0;
    const resolver = forgeKeyResolver('https://jwks.example/jwks.json', fetchJwks, () => nowMs);
    fetches = 0;
    await verify(good, { resolver });
    await verify(good, { resolver });
    expect(fetches).toBe(1);

    // Rotation: a token with a new kid arrives; the JWKS is fetched again (a minute later).
    const rotated = rsa();
    const newKid = `forge/invocation-token/${randomUUID()}`;
    jwks = { keys: [jwk(newKid, rotated.publicKey)] };
    nowMs = 61_000;
    await expect(verify(signRs256(claims, rotated.privateKeyPem, { kid: newKid }), { resolver })).resolves.toBeDefined();
    expect(fetches).toBe(2);

    // Forged kids within the minute do not make the relay fetch again.
    nowMs = 70_000;
    for (let i = 0; i < 5; i += 1) {
      await expect(verify(signRs256(claims, rotated.privateKeyPem, { kid: `forged-${i}` }), { resolver })).rejects.toMatchObject({ status: 401 });
    }
    expect(fetches).toBe(2);
  });
});

describe('token sealing', () => {
  const sealer = localTokenSealer(Buffer.alloc(32, 7).toString('base64'));

  it('opens what it sealed for the same ticket only', async () => {
    const sealed = await sealer.seal('secret-oauth-token', 'ticket-a');
    expect(sealed).not.toContain('secret-oauth-token');
    await expect(sealer.open(sealed, 'ticket-a')).resolves.toBe('secret-oauth-token');
    await expect(sealer.open(sealed, 'ticket-b')).rejects.toThrow();
    const tampered = `${sealed.slice(0, -4)}${sealed.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
    await expect(sealer.open(tampered, 'ticket-a')).rejects.toThrow();
  });

  it('refuses a key of the wrong length', () => {
    expect(() => localTokenSealer(Buffer.alloc(16).toString('base64'))).toThrow('TOKEN_ENCRYPTION_KEY');
  });
});
