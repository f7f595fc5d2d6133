import {
  AsymmetricAlgorithm,
  SymmetricAlgorithm,
  createQueryStringHash,
  decodeAsymmetric,
  decodeSymmetric,
  encodeSymmetric,
  fromMethodAndUrl,
} from 'atlassian-jwt';
import { timingSafeEqual } from 'node:crypto';
import { unauthorized } from '../core/errors';

/** Clock skew tolerated on `exp` and `iat` (Atlassian suggests "a few" seconds to minutes; we allow 30 s). */
export const CLOCK_SKEW_SECONDS = 30;

/** Connect context tokens from `AP.context.getToken()` carry this fixed qsh (context-qsh API migration). */
export const CONTEXT_QSH = 'context-qsh';

export interface JwtParts {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
}

/** Takes the token out of `Authorization: JWT <token>` (the Connect scheme is literally `JWT`). */
export function tokenFromAuthorization(authorization: string | undefined, scheme: 'JWT' | 'Bearer'): string {
  if (!authorization) throw unauthorized('missing_authorization');
  const match = /^(\S+) +(\S+)$/.exec(authorization.trim());
  if (!match || match[1].toLowerCase() !== scheme.toLowerCase()) throw unauthorized('wrong_authorization_scheme');
  return match[2];
}

function decodeSegment(segment: string): Record<string, unknown> {
  const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
  return value as Record<string, unknown>;
}

/** Reads header and claims WITHOUT verifying anything; callers verify before trusting them. */
export function peekJwt(token: string): JwtParts {
  const segments = token.split('.');
  if (segments.length !== 3 || segments.some((s) => !/^[A-Za-z0-9_-]*$/.test(s)) || !segments[2]) {
    throw unauthorized('malformed_token');
  }
  try {
    return { header: decodeSegment(segments[0]), payload: decodeSegment(segments[1]) };
  } catch (cause) {
    throw unauthorized('malformed_token', cause);
  }
}

/** Checks `exp` (required) and `iat` (optional, not in the future) against `nowSeconds`. */
export function checkTimes(payload: Record<string, unknown>, nowSeconds: number): void {
  const { exp, iat, nbf } = payload;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw unauthorized('missing_exp');
  if (nowSeconds >= exp + CLOCK_SKEW_SECONDS) throw unauthorized('expired');
  if (iat !== undefined && (typeof iat !== 'number' || iat > nowSeconds + CLOCK_SKEW_SECONDS)) {
    throw unauthorized('iat_in_future');
  }
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > nowSeconds + CLOCK_SKEW_SECONDS)) {
    throw unauthorized('not_yet_valid');
  }
}

/**
 * The Connect query string hash of a request to the relay. Connect computes the
 * canonical path relative to the app's descriptor `baseUrl`, so a path prefix in
 * RELAY_BASE_URL (a stage or custom-domain mapping) is removed when the request
 * path still carries it.
 */
export function relayQsh(method: string, target: string, relayBaseUrl: string): string {
  const basePath = new URL(relayBaseUrl).pathname.replace(/\/+$/, '');
  const relative = basePath && target.startsWith(`${basePath}/`) ? target.slice(basePath.length) : target;
  return createQueryStringHash(fromMethodAndUrl(method, relative), false);
}

/**
 * The qsh of an outbound call to Confluence: relative to the tenant baseUrl, so
 * its context path (`/wiki`) is stripped (atlassian.md §1.3).
 */
export function productQsh(method: string, url: string, tenantBaseUrl: string): string {
  return createQueryStringHash(fromMethodAndUrl(method, url), false, tenantBaseUrl);
}

export function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  // Compare equal-length buffers so the time does not reveal where they differ.
  if (left.length !== right.length) {
    timingSafeEqual(left, left);
    return false;
  }
  return timingSafeEqual(left, right);
}

/** Verifies an HS256 signature with `secret` (algorithm pinned; alg:none, RS256 etc. refused). */
export function verifyHs256(token: string, secret: string): Record<string, unknown> {
  const { header } = peekJwt(token);
  if (header.alg !== 'HS256') throw unauthorized('algorithm_not_allowed');
  try {
    return decodeSymmetric(token, secret, SymmetricAlgorithm.HS256) as Record<string, unknown>;
  } catch (cause) {
    throw unauthorized('bad_signature', cause);
  }
}

/** Verifies an RS256 signature with a PEM public key (algorithm pinned). */
export function verifyRs256(token: string, publicKeyPem: string): Record<string, unknown> {
  const { header } = peekJwt(token);
  if (header.alg !== 'RS256') throw unauthorized('algorithm_not_allowed');
  try {
    return decodeAsymmetric(token, publicKeyPem, AsymmetricAlgorithm.RS256) as Record<string, unknown>;
  } catch (cause) {
    throw unauthorized('bad_signature', cause);
  }
}

export interface AppTokenOptions {
  method: string;
  url: string;
  tenantBaseUrl: string;
  appKey: string;
  sharedSecret: string;
  nowSeconds?: number;
}

/** `Authorization` value for a call to Confluence as the app (HS256, iss = app key, qsh). */
export function appAuthorization(options: AppTokenOptions): string {
  const iat = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const token = encodeSymmetric(
    { iss: options.appKey, iat, exp: iat + 180, qsh: productQsh(options.method, options.url, options.tenantBaseUrl) },
    options.sharedSecret,
    SymmetricAlgorithm.HS256,
  );
  return `JWT ${token}`;
}
