/**
 * The Forge side of the stand-in (atlassian.md §8.2): the signing key and JWKS of Forge Invocation Tokens (FITs),
 * FIT minting, and the OAuth tokens Forge hands a remote in `x-forge-oauth-user` / `x-forge-oauth-system`.
 * Pure helpers: the server (stand-in.ts) owns the JWKS endpoint and the `/ex/confluence/<cloudId>/wiki` routes,
 * a site (site.ts) mints invocations.
 *
 * Choices where Forge's exact behaviour is unknown or irrelevant:
 * - The OAuth tokens are opaque random strings (real ones happen to be JWTs; remotes must treat them as opaque).
 * - A FIT is never accepted by the Confluence endpoints; only the OAuth tokens are.
 * - The JWKS only ever holds the current key (after rotateForgeKey the old one is gone at once).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';

export const FIT_ISSUER = 'forge/invocation-token';
/** Path of the JWKS on the stand-in origin. */
export const FORGE_JWKS_PATH = '/forge/.well-known/jwks.json';
/** `/ex/confluence/<cloudId>/wiki[/...]`: Confluence behind the API gateway (api.atlassian.com). */
export const FORGE_API_PATH = /^\/ex\/confluence\/([^/]+)\/wiki(\/.*)?$/;
/** Default FIT lifetime (iat -> exp) seen in real tokens. */
export const DEFAULT_FIT_LIFETIME_SECONDS = 25;
export const DEFAULT_FORGE_TOKEN_LIFETIME_SECONDS = 3600;
/** Module key of the upload macro the FITs claim to come from. */
export const FORGE_MODULE_KEY = 'upload-files';

export interface ForgeKey {
  /** `forge/invocation-token/<uuid>` */
  kid: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

/** One JSON Web Key of the JWKS. */
export interface ForgeJwk {
  kty: 'RSA';
  kid: string;
  alg: 'RS256';
  use: 'sig';
  n: string;
  e: string;
}

export function generateForgeKey(): ForgeKey {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { kid: `${FIT_ISSUER}/${randomUUID()}`, privateKeyPem: privateKey, publicKeyPem: publicKey };
}

export function jwkOf(key: ForgeKey): ForgeJwk {
  const jwk = createPublicKey(key.publicKeyPem).export({ format: 'jwk' });
  if (jwk.kty !== 'RSA' || typeof jwk.n !== 'string' || typeof jwk.e !== 'string') {
    throw new Error('forge key is not an RSA key');
  }
  return { kty: 'RSA', kid: key.kid, alg: 'RS256', use: 'sig', n: jwk.n, e: jwk.e };
}

/** A compact JWS: RS256 over `header.claims`, whatever the header says (so forged headers can be minted). */
export function signRs256(header: Record<string, unknown>, claims: Record<string, unknown>, privateKeyPem: string): string {
  const enc = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
  const input = `${enc(header)}.${enc(claims)}`;
  const signature = sign('sha256', Buffer.from(input, 'ascii'), createPrivateKey(privateKeyPem));
  return `${input}.${signature.toString('base64url')}`;
}

/**
 * Merges overrides into an object (deep-cloning what it touches). A value of undefined removes the key. A key
 * containing dots addresses a nested value: `{'app.apiBaseUrl': 'https://evil.example'}` replaces just that
 * claim (missing or non-object intermediates become objects).
 */
export function withPathOverrides(
  base: Record<string, unknown>,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const out = structuredClone(base);
  for (const [key, value] of Object.entries(overrides)) {
    const path = key.split('.');
    let target: Record<string, unknown> = out;
    for (const seg of path.slice(0, -1)) {
      const next = target[seg];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        if (value === undefined) {
          target = {};
          break;
        }
        target[seg] = {};
      }
      target = target[seg] as Record<string, unknown>;
    }
    const last = path[path.length - 1];
    if (value === undefined) delete target[last];
    else target[last] = value;
  }
  return out;
}

/** What an OAuth token handed out with a Forge invocation stands for. */
export interface ForgeTokenGrant {
  /** 'user': x-forge-oauth-user (acts as accountId); 'app': x-forge-oauth-system (acts as the app). */
  kind: 'user' | 'app';
  /** The user (kind 'user' only). */
  accountId?: string;
  /** The app id of the invocation that issued it. */
  appId: string;
  /** Epoch ms from which the token is refused as expired. */
  expiresAtMs: number;
}

export function newForgeToken(): string {
  return randomBytes(36).toString('base64url');
}

export interface FitIdentity {
  appId: string;
  cloudId: string;
  installationId: string;
  apiBaseUrl: string;
  siteUrl: string;
  environmentId: string;
}

/** Default FIT claims of a UI-module invocation (before overrides). */
export function defaultFitClaims(
  id: FitIdentity,
  opts: { accountId?: string; contentId?: string; iat: number; expiresInSeconds: number },
): Record<string, unknown> {
  return {
    iss: FIT_ISSUER,
    aud: id.appId,
    iat: opts.iat,
    nbf: opts.iat,
    exp: opts.iat + opts.expiresInSeconds,
    jti: randomUUID(),
    app: {
      id: id.appId,
      installationId: id.installationId,
      apiBaseUrl: id.apiBaseUrl,
      appVersion: '1.0.0',
      environment: { type: 'DEVELOPMENT', id: id.environmentId },
      module: { type: 'xen:macro', key: FORGE_MODULE_KEY },
      installation: {
        id: id.installationId,
        contexts: [{ name: `ari:cloud:confluence::site/${id.cloudId}`, apiBaseUrl: id.apiBaseUrl }],
      },
    },
    context: {
      cloudId: id.cloudId,
      localId: randomUUID(),
      moduleKey: FORGE_MODULE_KEY,
      siteUrl: id.siteUrl,
      ...(opts.contentId !== undefined
        ? { extension: { type: 'macro', content: { id: opts.contentId, type: 'page' }, isEditing: true } }
        : {}),
    },
    ...(opts.accountId !== undefined ? { principal: opts.accountId } : {}),
  };
}
