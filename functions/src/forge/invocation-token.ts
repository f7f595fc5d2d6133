import { verify } from 'node:crypto';
import type { RelayConfig } from '../core/config';
import { unauthorized } from '../core/errors';
import { isAllowedUrl } from '../core/hosts';
import { peekJwt } from '../connect/jwt';
import type { ForgeKeyResolver } from './jwks';

/** FITs live about 25 s (atlassian.md §8.2); the leeway stays small accordingly. */
export const FIT_CLOCK_SKEW_SECONDS = 10;
export const FIT_ISSUER = 'forge/invocation-token';

/** What a verified Forge Invocation Token tells the relay. */
export interface ForgeInvocation {
  appId: string;
  installationId: string;
  /** e.g. https://api.atlassian.com/ex/confluence/<cloudId>; Confluence's REST API is under `/wiki`. */
  apiBaseUrl: string;
  cloudId?: string;
  /** The user, for calls from UI modules. */
  accountId?: string;
  /** The page the UI module runs on, when the token says. */
  contentId?: string;
}

function stringAt(value: unknown, ...path: string[]): string | undefined {
  let current: unknown = value;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return typeof current === 'string' && current ? current : undefined;
}

/**
 * Verifies `Authorization: Bearer <FIT>` from Forge's invokeRemote: RS256 only,
 * signed by a key from Atlassian's JWKS, `iss` forge/invocation-token, `aud`
 * one of FORGE_APP_IDS, `exp`/`nbf` within a small leeway, and an
 * installation whose `apiBaseUrl` is on ALLOWED_FORGE_API_HOSTS (SSRF).
 */
export async function verifyForgeInvocation(
  token: string,
  deps: {
    config: Pick<RelayConfig, 'forgeAppIds' | 'allowedForgeApiHosts' | 'allowHttpTenants'>;
    resolveKey: ForgeKeyResolver;
    nowSeconds: () => number;
  },
): Promise<ForgeInvocation> {
  if (deps.config.forgeAppIds.length === 0) throw unauthorized('forge_disabled');
  const { header, payload } = peekJwt(token);
  if (header.alg !== 'RS256') throw unauthorized('algorithm_not_allowed');
  if (typeof header.kid !== 'string' || !header.kid) throw unauthorized('missing_kid');
  const key = await deps.resolveKey(header.kid);
  const [headerSegment, payloadSegment, signature] = token.split('.');
  const signedOk = verify('RSA-SHA256', Buffer.from(`${headerSegment}.${payloadSegment}`), key, Buffer.from(signature, 'base64url'));
  if (!signedOk) throw unauthorized('bad_signature');

  const now = deps.nowSeconds();
  const { exp, nbf, iss, aud } = payload;
  if (typeof exp !== 'number' || now >= exp + FIT_CLOCK_SKEW_SECONDS) throw unauthorized('expired');
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now + FIT_CLOCK_SKEW_SECONDS)) throw unauthorized('not_yet_valid');
  if (iss !== FIT_ISSUER) throw unauthorized('wrong_iss');
  const audiences = Array.isArray(aud) ? aud : [aud];
  const appId = audiences.find((value): value is string => typeof value === 'string' && deps.config.forgeAppIds.includes(value));
  if (!appId) throw unauthorized('wrong_aud');

  const installationId = stringAt(payload, 'app', 'installationId');
  const apiBaseUrl = stringAt(payload, 'app', 'apiBaseUrl')?.replace(/\/+$/, '');
  if (!installationId || !apiBaseUrl) throw unauthorized('missing_installation');
  if (!isAllowedUrl(apiBaseUrl, deps.config.allowedForgeApiHosts, deps.config.allowHttpTenants)) throw unauthorized('api_host_not_allowed');
  return {
    appId,
    installationId,
    apiBaseUrl,
    cloudId: stringAt(payload, 'context', 'cloudId'),
    accountId: stringAt(payload, 'principal'),
    contentId: stringAt(payload, 'context', 'extension', 'content', 'id'),
  };
}
