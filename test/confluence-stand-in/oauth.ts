/**
 * The OAuth 2.0 JWT-bearer grant of Atlassian's authorization server, as used by Connect apps to act as a user
 * ("2LOi", atlassian.md §4). Pure functions: the stand-in server owns the endpoint and the site lookup.
 *
 * Choices where Atlassian's exact behaviour is unknown (strict side):
 * - The assertion must be HS256; `aud` must name the authorization server (the stand-in origin, with or without a
 *   trailing slash); `exp` must be in the future (no leeway) and at most 60 s after `iat`.
 * - Only the `useraccountid` subject form is accepted (the `userkey` form is deprecated).
 * - `scope` names must be upper-case Connect scopes; anything else is `invalid_scope`. No scope = the defaults.
 * - Parameters must be in a form-urlencoded body, each at most once (RFC 6749 §3.2); an `assertion` in the URL
 *   query is refused (it would end up in access logs).
 */
import { SymmetricAlgorithm, decodeSymmetric } from 'atlassian-jwt';

export const TOKEN_PATH = '/oauth2/token';
export const JWT_BEARER_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const DEFAULT_TOKEN_SCOPES = ['READ', 'WRITE', 'ACT_AS_USER'] as const;
export const ISS_PREFIX = 'urn:atlassian:connect:clientid:';
export const SUB_PREFIX = 'urn:atlassian:connect:useraccountid:';
const LEGACY_SUB_PREFIX = 'urn:atlassian:connect:userkey:';
/** Longest assertion lifetime (exp - iat) the server accepts. */
export const MAX_ASSERTION_LIFETIME_SECONDS = 60;

const CONNECT_SCOPES = new Set([
  'READ',
  'WRITE',
  'DELETE',
  'PROJECT_ADMIN',
  'SPACE_ADMIN',
  'ADMIN',
  'ACT_AS_USER',
  'ACCESS_EMAIL_ADDRESSES',
]);
/** Connect scopes are hierarchical: WRITE implies READ, DELETE implies WRITE, the admin scopes imply DELETE. */
const WRITE_SCOPES = ['WRITE', 'DELETE', 'PROJECT_ADMIN', 'SPACE_ADMIN', 'ADMIN'];
const READ_SCOPES = ['READ', ...WRITE_SCOPES];

/** Whether a token with these scopes (undefined = unrestricted) may read, or write, content. */
export function scopesAllow(scopes: ReadonlySet<string> | undefined, need: 'read' | 'write'): boolean {
  if (scopes === undefined) return true;
  return (need === 'read' ? READ_SCOPES : WRITE_SCOPES).some((s) => scopes.has(s));
}

/** An OAuth error answer: `{error, error_description}` with this status. */
export class OAuthError extends Error {
  constructor(
    readonly error: 'invalid_request' | 'invalid_grant' | 'unsupported_grant_type' | 'invalid_scope',
    readonly description: string,
    readonly status = 400,
  ) {
    super(description);
  }
}

export interface TokenRequest {
  assertion: string;
  /** Requested scopes, deduplicated, in request order; the defaults if none were requested. */
  scopes: string[];
}

/** Parses and checks the form parameters (not the assertion). */
export function parseTokenRequest(contentType: string | undefined, body: Buffer, query: URLSearchParams): TokenRequest {
  if (query.has('assertion')) {
    throw new OAuthError('invalid_request', 'the assertion must be sent in the request body, not in the URL');
  }
  if (!contentType || !/^application\/x-www-form-urlencoded\s*(;|$)/i.test(contentType)) {
    throw new OAuthError('invalid_request', 'the request body must be application/x-www-form-urlencoded');
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw new OAuthError('invalid_request', 'the request body is not valid UTF-8');
  }
  const form = new URLSearchParams(text);
  for (const name of ['grant_type', 'assertion', 'scope']) {
    if (form.getAll(name).length > 1) throw new OAuthError('invalid_request', `parameter ${name} given more than once`);
  }
  const grantType = form.get('grant_type');
  if (!grantType) throw new OAuthError('invalid_request', 'missing parameter grant_type');
  if (grantType !== JWT_BEARER_GRANT_TYPE) {
    throw new OAuthError('unsupported_grant_type', `grant_type ${grantType} is not supported; use ${JWT_BEARER_GRANT_TYPE}`);
  }
  const assertion = form.get('assertion');
  if (!assertion) throw new OAuthError('invalid_request', 'missing parameter assertion');
  const scopeParam = (form.get('scope') ?? '').trim();
  let scopes: string[] = [...DEFAULT_TOKEN_SCOPES];
  if (scopeParam !== '') {
    scopes = [...new Set(scopeParam.split(/\s+/))];
    const bad = scopes.filter((s) => !CONNECT_SCOPES.has(s));
    if (bad.length > 0) {
      throw new OAuthError('invalid_scope', `unknown scope(s) ${bad.join(', ')}: use upper-case Connect scope names`);
    }
  }
  return { assertion, scopes };
}

/**
 * The `iss` claim of an assertion, read WITHOUT verifying anything (used only to find the site whose secret
 * verifies it, and to count token requests per site). Undefined if it can't be read.
 */
export function unverifiedIssuer(assertion: string): string | undefined {
  const parts = assertion.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (typeof claims === 'object' && claims !== null && typeof (claims as { iss?: unknown }).iss === 'string') {
      return (claims as { iss: string }).iss;
    }
  } catch {
    // not a JWT
  }
  return undefined;
}

/** The oauthClientId named by an `iss` claim, or undefined if it is not `urn:atlassian:connect:clientid:<id>`. */
export function clientIdOfIssuer(iss: string | undefined): string | undefined {
  if (iss === undefined || !iss.startsWith(ISS_PREFIX)) return undefined;
  const id = iss.slice(ISS_PREFIX.length);
  return id === '' ? undefined : id;
}

export interface AssertionSite {
  baseUrl: string;
  sharedSecret: string;
}

/**
 * Verifies an assertion for the site its `iss` names and returns the user it is for. Throws OAuthError
 * `invalid_grant` on any defect. `findSite` maps an oauthClientId to its site.
 */
export function verifyAssertion<S extends AssertionSite>(
  assertion: string,
  findSite: (oauthClientId: string) => S | undefined,
  authorizationServer: string,
  nowMs = Date.now(),
): { site: S; accountId: string } {
  const bad = (msg: string) => new OAuthError('invalid_grant', msg);
  // First pass unverified, only to learn which site's secret to verify with. The algorithm is still pinned to
  // HS256: a header with anything else (none, RS256, HS512) is refused here.
  let unverified: Record<string, unknown>;
  try {
    unverified = decodeSymmetric(assertion, '', SymmetricAlgorithm.HS256, true) as Record<string, unknown>;
  } catch (e) {
    throw bad(`assertion is not an HS256 JWT: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof unverified !== 'object' || unverified === null) throw bad('assertion claims are not a JSON object');
  const clientId = clientIdOfIssuer(typeof unverified.iss === 'string' ? unverified.iss : undefined);
  if (clientId === undefined) throw bad(`iss must be ${ISS_PREFIX}<oauthClientId>`);
  const site = findSite(clientId);
  if (!site) throw bad(`unknown client ${clientId}`);

  let claims: Record<string, unknown>;
  try {
    claims = decodeSymmetric(assertion, site.sharedSecret, SymmetricAlgorithm.HS256) as Record<string, unknown>;
  } catch (e) {
    throw bad(`assertion signature rejected: ${e instanceof Error ? e.message : String(e)}`);
  }

  const sub = claims.sub;
  if (typeof sub === 'string' && sub.startsWith(LEGACY_SUB_PREFIX)) {
    throw bad(`the userkey subject form is not supported; use ${SUB_PREFIX}<accountId>`);
  }
  if (typeof sub !== 'string' || !sub.startsWith(SUB_PREFIX) || sub.length === SUB_PREFIX.length) {
    throw bad(`sub must be ${SUB_PREFIX}<accountId>`);
  }
  const accountId = sub.slice(SUB_PREFIX.length);

  if (claims.tnt !== site.baseUrl) throw bad(`tnt ${JSON.stringify(claims.tnt)} is not the site this client is installed on`);

  const server = authorizationServer.replace(/\/+$/, '');
  const audiences = Array.isArray(claims.aud) ? claims.aud : [];
  if (!audiences.some((a) => a === server || a === `${server}/`)) {
    throw bad(`aud ${JSON.stringify(claims.aud)} does not name this authorization server (${server})`);
  }

  const { iat, exp } = claims;
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw bad('iat claim missing');
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw bad('exp claim missing');
  if (exp * 1000 <= nowMs) throw bad('assertion expired');
  if (exp <= iat) throw bad('exp must be after iat');
  if (exp - iat > MAX_ASSERTION_LIFETIME_SECONDS) {
    throw bad(`assertion lifetime exp - iat = ${exp - iat} s exceeds ${MAX_ASSERTION_LIFETIME_SECONDS} s`);
  }
  return { site, accountId };
}
