import { createPublicKey, type KeyObject } from 'node:crypto';
import { unauthorized } from '../core/errors';

/** Keys are looked up again on an unknown kid, but not more often than this. */
const MIN_REFRESH_INTERVAL_MS = 60_000;
const FETCH_TIMEOUT_MS = 5_000;

export type ForgeKeyResolver = (kid: string) => Promise<KeyObject>;

interface Jwk {
  kid?: unknown;
  kty?: unknown;
  alg?: unknown;
  use?: unknown;
}

/**
 * Resolves a Forge Invocation Token's `kid` to an RSA public key from the
 * JWKS at `jwksUrl`. The set is cached for the container's life and fetched
 * again when a token names a kid it does not have (key rotation), at most
 * once a minute, so forged kids cannot make the relay hammer Atlassian.
 * Only RSA signing keys (and, when they say, for RS256) are kept.
 */
export function forgeKeyResolver(jwksUrl: string, fetchImpl: typeof fetch = fetch, nowMs: () => number = Date.now): ForgeKeyResolver {
  let keys = new Map<string, KeyObject>();
  let lastFetchMs = -Infinity;
  let inFlight: Promise<void> | undefined;

  async function refresh(): Promise<void> {
    lastFetchMs = nowMs();
    let body: { keys?: Jwk[] };
    try {
      const response = await fetchImpl(jwksUrl, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: 'error' });
      if (!response.ok) throw new Error(`JWKS answered ${response.status}`);
      body = (await response.json()) as { keys?: Jwk[] };
    } catch (cause) {
      // Keep the keys we had; a token with a known kid still verifies.
      throw unauthorized('jwks_unavailable', cause);
    }
    const next = new Map<string, KeyObject>();
    for (const jwk of body.keys ?? []) {
      if (typeof jwk.kid !== 'string' || jwk.kty !== 'RSA') continue;
      if (jwk.alg !== undefined && jwk.alg !== 'RS256') continue;
      if (jwk.use !== undefined && jwk.use !== 'sig') continue;
      try {
        next.set(jwk.kid, createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' }));
      } catch {
        // An unreadable key is skipped; tokens naming it fail as unknown.
      }
    }
    keys = next;
  }

  return async (kid) => {
    const known = keys.get(kid);
    if (known) return known;
    if (nowMs() - lastFetchMs >= MIN_REFRESH_INTERVAL_MS) {
      inFlight ??= refresh().finally(() => {
        inFlight = undefined;
      });
      await inFlight;
    } else if (inFlight) {
      await inFlight;
    }
    const key = keys.get(kid);
    if (!key) throw unauthorized('unknown_forge_kid');
    return key;
  };
}
