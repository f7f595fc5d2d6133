/** Public types of the Confluence Cloud stand-in (see stand-in.ts). */

export interface StandInOptions {
  /** Connect app key expected as `iss` of app JWTs. Default 'confluence-upload-relay'. */
  appKey?: string;
  /** If set, bodies of attachment uploads (POST/PUT .../child/attachment) are read at this rate, to simulate a
   * WAN link. 100 Mbit/s = 12_500_000. */
  bytesPerSecond?: number;
  /** The site's attachment size limit; a larger file gets 404 like real Confluence. Default 2 GiB. */
  siteMaxAttachmentBytes?: number;
  /** Answer `extensions.fileSize` as a string (Confluence has been seen doing this). */
  fileSizeAsString?: boolean;
}

/** 'other' = an Authorization header with a scheme that is neither JWT nor Bearer (e.g. Basic). */
export type AuthKind = 'jwt' | 'bearer' | 'none' | 'other';

export interface RecordedRequest {
  method: string;
  /** Raw request path without the query string (still percent-encoded, includes `/sites/<name>/wiki`). */
  path: string;
  /** Query parameters (a repeated parameter keeps its last value). */
  query: Record<string, string>;
  authKind: AuthKind;
  /** Status answered; 0 while pending, or if the connection was reset / the client went away. */
  status: number;
  /** Set for requests under `/sites/<name>/wiki`, and under `/ex/confluence/<cloudId>/wiki` when the cloudId is
   * a site's (not for `/oauth2/token`: count those with `site.tokenRequests`). */
  siteName?: string;
  /** The user a bearer token stood for (bearer requests only; a Forge user token too, a Forge system token not). */
  accountId?: string;
  /** True if the answer was a connection reset injected by failNext (resetConnection or resetAfterBytes). */
  reset?: boolean;
  /** True if the request was answered by a failNext rule, or (passThrough rules) had its answer delayed or reset
   * by one. */
  injected?: boolean;
}

/**
 * A failNext rule. It matches any endpoint, `/oauth2/token` included. The modes:
 * - default: the whole body is read, nothing is processed or stored, and the request is answered with
 *   `status`/`headers`/`body` (after `delayMs`), or the socket is reset (`resetConnection`).
 * - `resetAfterBytes`: the socket is reset mid-body; nothing is processed or stored.
 * - `passThrough`: the request is processed normally (an upload IS stored); only its real answer is delayed by
 *   `delayMs` and/or replaced by a reset (`resetConnection`).
 */
export interface FailRule {
  /** HTTP method to match (case-insensitive); any if absent. */
  method?: string;
  /** Substring of the request path (without query) to match; any if absent. */
  pathIncludes?: string;
  /** Status of the injected answer. Default 500. Ignored with passThrough, resetConnection or resetAfterBytes. */
  status?: number;
  headers?: Record<string, string>;
  /** JSON body (a string is sent as-is). Default `{statusCode: status, message: ...}`. */
  body?: unknown;
  /** How many matching requests get this answer. Default 1. */
  times?: number;
  /** Wait this long (after reading the body) before answering or resetting. With passThrough: after the request
   * was processed (e.g. the attachment stored), before its real answer is sent. */
  delayMs?: number;
  /** Destroy the socket (TCP RST) instead of answering. With passThrough: after the request was processed, so
   * the upload IS stored but the client never hears back ("Confluence created it, the answer got lost"). */
  resetConnection?: boolean;
  /** Read this many body bytes (at least; bodies arrive in chunks), then destroy the socket (TCP RST) without an
   * answer: a connection lost mid-upload. Nothing is processed or stored. A shorter body is read completely and
   * then reset. Cannot be combined with passThrough. */
  resetAfterBytes?: number;
  /** Process the request normally and apply only `delayMs` / `resetConnection` to its real answer (whatever it
   * is, success or error). `status`, `headers` and `body` are ignored. */
  passThrough?: boolean;
  /** With passThrough, for an upload: after this many body bytes (at least; bodies arrive in chunks) stop
   * reading for `stallMs`, then read on and process normally — a Confluence that stalls mid-upload. */
  stallAfterBytes?: number;
  /** How long a `stallAfterBytes` stall lasts. */
  stallMs?: number;
}

export interface StoredAttachment {
  id: string;
  pageId: string;
  title: string;
  fileSize: number;
  mediaType: string;
  /** Lowercase hex SHA-256 of the bytes received. */
  sha256: string;
  comment?: string;
  minorEdit: boolean;
  /** Current version number (1 on create, +1 for every PUT of the same title). */
  version: number;
  /** Author of the current version: 'app' for app JWT uploads, the accountId for bearer (user) uploads. */
  createdBy: 'app' | string;
  /** Media file id (a new uuid per version, as Confluence's media store does). */
  fileId: string;
  /** ISO time of the current version. */
  when: string;
  bytes: Buffer;
}

export interface PageOptions {
  /** accountIds allowed to edit the page; '*' (default) = everybody. */
  editors?: string[] | '*';
  /** Space with attachments turned off: uploads get 403. */
  attachmentsDisabled?: boolean;
  /** Title answered by GET /rest/api/content/{id}. Default `Page <id>`. */
  title?: string;
}

export interface AcceptBearerOptions {
  /** The token stops working (401 `token expired`) after this many seconds. Default: never. */
  expiresInSeconds?: number;
  /** Connect scopes the token carries (upper case). Default: all. Reading needs READ or a scope implying it
   * (WRITE, DELETE, SPACE_ADMIN, PROJECT_ADMIN, ADMIN); uploading needs WRITE or one implying it. Otherwise 403. */
  scopes?: string[];
}

export interface InstallRequestOptions {
  /** The relay's descriptor baseUrl (becomes `aud`; qsh is computed relative to it). */
  relayBaseUrl: string;
  eventType?: 'installed' | 'uninstalled';
  /** Path the lifecycle callback is POSTed to; default `/lifecycle/<eventType>`. May include relayBaseUrl's path prefix. */
  path?: string;
  /** Overrides merged into the JSON payload (a value of undefined removes the field). */
  payload?: Record<string, unknown>;
  /** Overrides merged into the JWT claims (a value of undefined removes the claim). */
  claims?: Record<string, unknown>;
  /** `kid` header; default the stand-in's install key id. */
  kid?: string;
  /** Signing key; default the stand-in's install private key. */
  privateKeyPem?: string;
}

export interface InstallRequest {
  /** The JSON text to POST. */
  body: string;
  /** `JWT <token>` for the Authorization header. */
  authorization: string;
  /** The bare token. */
  token: string;
}

export interface ContextTokenOptions {
  accountId: string;
  /** Default 'context-qsh'. */
  qsh?: string;
  /** Default 900. */
  expiresInSeconds?: number;
  /** Overrides merged into the claims (a value of undefined removes the claim). */
  claims?: Record<string, unknown>;
}

export interface ForgeInvocationOptions {
  /** The Forge app id, `ari:cloud:ecosystem::app/<uuid>`: becomes `aud` and `app.id`. */
  appId: string;
  /** The user in front of the UI module: becomes `principal`, and the user token acts as this user. */
  accountId?: string;
  /** Page the macro sits on: becomes `context.extension` (`{type: 'macro', content: {id, type: 'page'}, isEditing: true}`). */
  contentId?: string;
  /** Overrides merged into the claims; a value of undefined removes the claim. A key with dots addresses a
   * nested claim, e.g. `{'app.apiBaseUrl': 'https://evil.example'}` or `{'app.installationId': undefined}`. */
  claims?: Record<string, unknown>;
  /** Overrides merged into the JWS header (same rules). The signature is RS256 whatever the header says. */
  header?: Record<string, unknown>;
  /** Signing key; default the stand-in's current Forge key (`standIn.forgeKey`). */
  privateKeyPem?: string;
  /** exp - iat. Default 25 (FITs are short-lived); negative for an already expired FIT. */
  expiresInSeconds?: number;
  /** Send `x-forge-oauth-user` (acting as accountId). Default: true when accountId is given. Needs accountId. */
  userToken?: boolean;
  /** Send `x-forge-oauth-system` (acting as the app). Default true. */
  systemToken?: boolean;
}

/** What Forge sends to a remote on `invokeRemote` from a UI module. */
export interface ForgeInvocation {
  /** The Forge Invocation Token (RS256 JWT). */
  fit: string;
  /** `authorization: Bearer <fit>`, plus `x-forge-oauth-user` / `x-forge-oauth-system` when asked for. */
  headers: Record<string, string>;
  /** The FIT's claims as signed. */
  claims: Record<string, unknown>;
}

export interface Site {
  name: string;
  /** `${origin}/sites/${name}/wiki`: the tenant baseUrl. App JWT qsh is computed relative to it. */
  baseUrl: string;
  /** `/sites/${name}/wiki` (what Confluence reports as `_links.context`). */
  contextPath: string;
  clientKey: string;
  sharedSecret: string;
  /** accountId of the app's bot user (shown as `version.by` for app uploads). */
  appAccountId: string;
  /** Sent in the installed callback; the assertion of the JWT-bearer grant names it in `iss`. */
  oauthClientId: string;
  /** `expires_in` of access tokens issued by `/oauth2/token` for this site. Default 900. Settable. */
  tokenLifetimeSeconds: number;
  /** How many POSTs to `/oauth2/token` named this site's oauthClientId in the assertion's `iss` (valid or not,
   * failNext-injected answers included). */
  readonly tokenRequests: number;
  /** Adds (or reconfigures, keeping its attachments) a page. */
  addPage(id: string, opts?: PageOptions): void;
  /** Removes a page and its attachments. */
  removePage(id: string): void;
  attachments(pageId: string): StoredAttachment[];
  allAttachments(): StoredAttachment[];
  /** The lifecycle callback Confluence would send to the relay: JSON body and RS256 `Authorization`. */
  installRequest(opts: InstallRequestOptions): InstallRequest;
  /** A new shared secret, as a reinstall hands over; app JWTs signed with the old one are refused from now on. */
  rotateSharedSecret(): void;
  /** What AP.context.getToken() returns inside the app's iframe on this site. */
  contextToken(opts: ContextTokenOptions): string;
  /** Registers a bearer token (as from the OAuth 2.0 JWT-bearer grant) that acts as the given user. */
  acceptBearer(token: string, accountId: string, opts?: AcceptBearerOptions): void;
  /** Makes every bearer token of this site (issued by `/oauth2/token`, registered, or handed out with a Forge
   * invocation) expire now: using one is answered 401 `{statusCode: 401, message: 'token expired'}`. Tokens
   * issued later are not affected. */
  expireBearerTokens(): void;

  // ---- Forge identity (atlassian.md §8.2) ----

  /** The site's cloudId (a uuid). */
  cloudId: string;
  /** The Forge app's installation on this site: `ari:cloud:ecosystem::installation/<uuid>`. */
  forgeInstallationId: string;
  /** `${origin}/ex/confluence/${cloudId}`: the FIT's `app.apiBaseUrl` (Confluence via the API gateway; the REST
   * API is under `${forgeApiBaseUrl}/wiki/rest/api/...` and only takes tokens from `forgeInvocation`). */
  forgeApiBaseUrl: string;
  /** `${origin}/sites/${name}`: the FIT's `context.siteUrl` (the analogue of `https://x.atlassian.net`). */
  siteUrl: string;
  /** Lifetime of the OAuth tokens handed out with later Forge invocations. Default 3600. Settable. */
  forgeTokenLifetimeSeconds: number;
  /**
   * A Forge invocation from the app's macro on this site: a FIT signed with the stand-in's Forge key, and fresh
   * OAuth tokens registered for this site's cloudId (usable only under `forgeApiBaseUrl`). The user token acts
   * as accountId (editor rights enforced); the system token acts as the app.
   */
  forgeInvocation(opts: ForgeInvocationOptions): ForgeInvocation;
}

export type MountHandler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;

export interface ConfluenceStandIn {
  /** http://127.0.0.1:PORT */
  origin: string;
  /** `${origin}/install-keys`; GET `${installKeysUrl}/${kid}` returns the PEM public key. */
  installKeysUrl: string;
  /**
   * `${origin}/oauth2/token`: the OAuth 2.0 JWT-bearer grant of Atlassian's authorization server (act as user).
   * POST form-urlencoded `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>[&scope=READ WRITE]`.
   * The assertion must be HS256 with the site's sharedSecret, `iss` = `urn:atlassian:connect:clientid:<oauthClientId>`,
   * `sub` = `urn:atlassian:connect:useraccountid:<accountId>`, `tnt` = the site baseUrl, `aud` = `origin` (trailing
   * slash allowed), `iat`, `exp` in the future and `exp - iat <= 60`. Errors are 400 `{error, error_description}`
   * (`invalid_grant` for a bad assertion, `unsupported_grant_type`, `invalid_request`, `invalid_scope`). Success:
   * 200 `{access_token, token_type: 'Bearer', expires_in: site.tokenLifetimeSeconds, scope}`; the token then acts
   * as that user on that site.
   */
  oauthTokenUrl: string;
  /** `${origin}/forge/.well-known/jwks.json`: the JWKS with the current Forge key
   * (`{keys: [{kty: 'RSA', kid, alg: 'RS256', use: 'sig', n, e}]}`). */
  forgeJwksUrl: string;
  /** The current Forge Invocation Token signing key (RSA 2048, kid `forge/invocation-token/<uuid>`). */
  readonly forgeKey: { kid: string; privateKeyPem: string; publicKeyPem: string };
  /** Replaces the Forge key with a new one (new kid); the old key is no longer in the JWKS. Returns the new key. */
  rotateForgeKey(): { kid: string; privateKeyPem: string; publicKeyPem: string };
  /** RSA 2048 key pair generated at start, used to sign install/uninstall callbacks. */
  installKey: { kid: string; privateKeyPem: string; publicKeyPem: string };
  /** Get-or-create a site (tenant); default name 'default'. */
  site(name?: string): Site;
  /** Every request received, in arrival order. */
  requests: RecordedRequest[];
  /** Fault injection: the next matching request(s) get this answer instead. */
  failNext(rule: FailRule): void;
  /**
   * Serves every request whose path is `prefix` or below it with `handler`
   * (raw Node request/response), before any Confluence route; such requests
   * are not recorded. For pages built on top of the stand-in (the sandbox).
   */
  mount(prefix: string, handler: MountHandler): void;
  close(): Promise<void>;
}
