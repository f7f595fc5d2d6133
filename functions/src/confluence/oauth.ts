import { SymmetricAlgorithm, encodeSymmetric } from 'atlassian-jwt';
import { AppError } from '../core/errors';
import { parseRetryAfter, retryAfterHeader } from './client';

/** The Connect scopes requested for user tokens: what an attachment upload needs, no more. */
export const USER_TOKEN_SCOPES = ['READ', 'WRITE'] as const;

/** Tokens are renewed this long before they expire, so none runs out mid-upload. */
const RENEW_BEFORE_MS = 60_000;
const MAX_CACHED_TOKENS = 1000;

export interface UserTokenRequest {
  tenantId: string;
  baseUrl: string;
  oauthClientId: string;
  sharedSecret: string;
  accountId: string;
}

export interface UserTokenProvider {
  /** An access token to act as the user, from the cache or the authorization server. */
  get(request: UserTokenRequest, timeoutMs: number): Promise<string>;
  /** Forgets a token Confluence refused (revoked, or expired early). */
  invalidate(request: UserTokenRequest): void;
}

/**
 * OAuth 2.0 JWT-bearer grant for Connect apps ("act as user", atlassian.md §4):
 * an HS256 assertion signed with the tenant's shared secret (iss = the
 * oauthClientId URN, sub = the user's accountId URN, tnt = the site, aud = the
 * authorization server, 60 s), exchanged for a bearer token. Tokens are kept
 * in this container's memory only, per tenant, user and scopes; never stored
 * or logged.
 */
export function userTokenProvider(tokenUrl: string, fetchImpl: typeof fetch = fetch): UserTokenProvider {
  const cache = new Map<string, { token: string; expiresAtMs: number }>();
  const audience = new URL(tokenUrl).origin;
  const scope = USER_TOKEN_SCOPES.join(' ');
  const keyOf = (request: UserTokenRequest) => `${request.tenantId}\u0000${request.accountId}\u0000${scope}`;

  return {
    invalidate(request) {
      cache.delete(keyOf(request));
    },

    async get(request, timeoutMs) {
      const key = keyOf(request);
      const cached = cache.get(key);
      if (cached && cached.expiresAtMs - RENEW_BEFORE_MS > Date.now()) return cached.token;

      const iat = Math.floor(Date.now() / 1000);
      const assertion = encodeSymmetric(
        {
          iss: `urn:atlassian:connect:clientid:${request.oauthClientId}`,
          sub: `urn:atlassian:connect:useraccountid:${request.accountId}`,
          tnt: request.baseUrl,
          aud: audience,
          iat,
          exp: iat + 60,
        },
        request.sharedSecret,
        SymmetricAlgorithm.HS256,
      );
      let response: Response;
      try {
        response = await fetchImpl(tokenUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion, scope }).toString(),
          signal: AbortSignal.timeout(timeoutMs),
          redirect: 'error',
        });
      } catch (cause) {
        throw new AppError(503, 'token_service_unavailable', "Atlassian's authorization server could not be reached; try again later.", {
          cause,
          headers: retryAfterHeader(undefined),
        });
      }
      const text = await response.text();
      if (response.status >= 500 || response.status === 429) {
        throw new AppError(503, 'token_service_unavailable', "Atlassian's authorization server is unavailable; try again later.", {
          headers: retryAfterHeader(parseRetryAfter(response.headers.get('retry-after'))),
          reason: `token_status_${response.status}`,
        });
      }
      let body: { access_token?: unknown; expires_in?: unknown } = {};
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        // handled below
      }
      if (response.status !== 200 || typeof body.access_token !== 'string') {
        // A stale oauthClientId (site import) or a revoked app lands here.
        throw new AppError(502, 'token_refused', "Atlassian's authorization server refused to let the app act as this user.", {
          reason: `token_status_${response.status}`,
        });
      }
      const lifetimeSeconds = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 900;
      if (cache.size >= MAX_CACHED_TOKENS) cache.delete(cache.keys().next().value as string);
      cache.set(key, { token: body.access_token, expiresAtMs: Date.now() + lifetimeSeconds * 1000 });
      return body.access_token;
    },
  };
}
