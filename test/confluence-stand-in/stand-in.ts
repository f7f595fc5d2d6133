/**
 * Confluence Cloud stand-in: a real HTTP server on 127.0.0.1 that answers the endpoints an upload relay uses
 * the way Confluence Cloud does (app JWT auth with qsh, attachment upload/versioning, permission check,
 * attachment lookup and download), plus the install-keys CDN used to verify signed lifecycle callbacks.
 *
 * It is written independently of the relay (nothing is imported from functions/) so that tests exercise the
 * relay against a second implementation of the contract, not against itself.
 *
 * Several sites (tenants) can live on one server; each is served under `${origin}/sites/<name>/wiki`, a
 * baseUrl with a context path just like `https://x.atlassian.net/wiki`.
 *
 * Choices where Confluence's exact behaviour is unknown (the stand-in errs on the strict side):
 * - App JWTs are only read from `Authorization: JWT ...` (no `?jwt=`); `aud`, `sub` and `iat` are not checked.
 * - Multipart bodies go through the strict parser in multipart.ts: structural errors, non-UTF-8 part headers,
 *   a `file` part without filename, a comment count that differs from the file count, or a minorEdit other
 *   than true/false are all 400. Filenames are taken literally (quoted-pair escapes undone, `%22` kept as is;
 *   RFC 5987 `filename*` is honoured). Text parts without a charset are decoded as Latin-1.
 * - Wrong request Content-Type is 415 (uploads: not multipart/form-data; permission check: not JSON).
 * - Every request body is read completely before the answer, including error answers and failNext.
 * - RecordedRequest.status is 0 for requests not (yet) answered, reset by failNext, or abandoned by the client.
 * - Bearer tokens carry Connect scopes (oauth.ts): reads need READ (or a scope implying it), uploads WRITE; an
 *   insufficient scope is 403. An expired bearer token is 401 `token expired`.
 *
 * Also emulated: Atlassian's OAuth 2.0 authorization server (`POST /oauth2/token`, the JWT-bearer grant that lets
 * a Connect app act as a user; see oauth.ts). Its `aud` is the stand-in origin. Assertions are never recorded.
 *
 * And Forge (forge.ts, atlassian.md §8.2): the JWKS of Forge Invocation Tokens at `/forge/.well-known/jwks.json`,
 * FITs and OAuth tokens minted by `site.forgeInvocation()`, and the API gateway path
 * `/ex/confluence/<cloudId>/wiki/rest/api/...`, which serves the same endpoints as the site path but only to
 * `Authorization: Bearer <x-forge-oauth-user | x-forge-oauth-system token>` issued for that cloudId (anything
 * else, app JWTs and Connect bearer tokens included, is 401; an unknown cloudId is 404). Its `_links.base` is
 * `${forgeApiBaseUrl}/wiki`, and downloads there need a token too. Forge tokens are not accepted on the site path.
 */
import { createHash, generateKeyPairSync, randomBytes, randomUUID, type Hash } from 'node:crypto';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  SymmetricAlgorithm,
  createCanonicalRequest,
  createQueryStringHash,
  decodeSymmetric,
  fromMethodAndUrl,
} from 'atlassian-jwt';
import {
  FORGE_API_PATH,
  FORGE_JWKS_PATH,
  generateForgeKey,
  jwkOf,
  type ForgeKey,
} from './forge';
import { HttpError, errorBody, readBody, runHandler } from './http-util';
import { MultipartError, MultipartParser, parseHeaderWithParams, type PartHandler, type PartInfo } from './multipart';
import {
  OAuthError,
  TOKEN_PATH,
  clientIdOfIssuer,
  parseTokenRequest,
  scopesAllow,
  unverifiedIssuer,
  verifyAssertion,
} from './oauth';
import { SiteState, type Page } from './site';
import type {
  AuthKind,
  ConfluenceStandIn,
  FailRule,
  MountHandler,
  RecordedRequest,
  Site,
  StandInOptions,
  StoredAttachment,
} from './types';

export * from './types';

const DEFAULT_APP_KEY = 'confluence-upload-relay';
const DEFAULT_SITE_MAX_ATTACHMENT_BYTES = 2 * 1024 ** 3;
/** Leeway on `exp` for app JWTs. */
const JWT_CLOCK_SKEW_SECONDS = 30;
const MAX_JSON_BODY_BYTES = 1024 * 1024;
const MAX_TEXT_PART_BYTES = 64 * 1024;

type Principal = { kind: 'app' } | { kind: 'user'; accountId: string };

/** A site as reached through one of its two doors: its own baseUrl, or the Forge API gateway. */
interface SiteView {
  site: SiteState;
  via: 'site' | 'forge';
  /** What responses give as `_links.base`. */
  base: string;
  /** What responses give as `_links.context`. */
  context: string;
}

/** A request path under a site's REST API, resolved. */
interface ApiPath {
  /** Undefined if the named site (or cloudId) is unknown; then `missing` says what. */
  view?: SiteView;
  missing: string;
  /** The path below `.../wiki`, e.g. `/rest/api/content/123`. */
  rest: string;
}

interface RequestCtx {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** req.url as received: raw path plus query. */
  rawUrl: string;
  /** Raw path, no query. */
  path: string;
  query: URLSearchParams;
  rec: RecordedRequest;
  /** POST/PUT .../child/attachment: the request whose body is throttled. */
  isUpload: boolean;
  /** passThrough failNext rule: answers are kept in `held` instead of being sent. */
  holdAnswer?: boolean;
  /** passThrough failNext rule: a stall mid-body. */
  stall?: { afterBytes: number; ms: number };
  held?: { status: number; headers: OutgoingHttpHeaders; body: string | Buffer };
}

const SITE_PATH = /^\/sites\/([^/]+)\/wiki(\/.*)?$/;
const UPLOAD_REST_PATH = /^\/rest\/api\/content\/[^/]+\/child\/attachment\/?$/;
const CONTENT_PATH = /^\/rest\/api\/content\/([^/]+)(?:\/(child\/attachment|permission\/check))?\/?$/;
const DOWNLOAD_PATH = /^\/download\/attachments\/([^/]+)\/([^/]+)\/?$/;
const INSTALL_KEY_PATH = /^\/install-keys\/([^/]+)$/;

function authKindOf(header: string | undefined): AuthKind {
  if (!header) return 'none';
  const scheme = header.trim().split(/\s+/, 1)[0].toLowerCase();
  if (scheme === 'jwt') return 'jwt';
  if (scheme === 'bearer') return 'bearer';
  return 'other';
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `malformed percent-encoding in path segment "${segment}"`);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

// ------------------------------------------------------------------------------------------------------------
// Multipart upload collection

interface ReceivedFile {
  filename: string;
  contentType?: string;
  chunks: Buffer[];
  size: number;
  hash: Hash;
  /** Larger than the site limit: bytes are counted but no longer kept. */
  oversize: boolean;
}

interface ReceivedText {
  contentType?: string;
  chunks: Buffer[];
  size: number;
}

type CurrentPart = { kind: 'file'; file: ReceivedFile } | { kind: 'text'; text: ReceivedText } | { kind: 'ignored' };

/** Feeds an upload body to the strict multipart parser and keeps what Confluence looks at. */
class UploadCollector implements PartHandler {
  readonly files: ReceivedFile[] = [];
  readonly comments: ReceivedText[] = [];
  readonly minorEdits: ReceivedText[] = [];
  private current: CurrentPart | undefined;
  private readonly parser: MultipartParser;

  constructor(
    boundary: string,
    private readonly maxFileBytes: number,
  ) {
    this.parser = new MultipartParser(boundary, this);
  }

  write(chunk: Buffer): void {
    this.parser.write(chunk);
  }

  finish(): void {
    this.parser.end();
  }

  onPartStart(part: PartInfo): void {
    if (part.name === 'file') {
      // Confluence takes the attachment title from the filename; a `file` field without one is not a file.
      if (part.filename === undefined) throw new MultipartError('part "file" has no filename');
      const file: ReceivedFile = {
        filename: part.filename,
        contentType: part.contentType,
        chunks: [],
        size: 0,
        hash: createHash('sha256'),
        oversize: false,
      };
      this.files.push(file);
      this.current = { kind: 'file', file };
    } else if (part.name === 'comment' || part.name === 'minorEdit') {
      const text: ReceivedText = { contentType: part.contentType, chunks: [], size: 0 };
      (part.name === 'comment' ? this.comments : this.minorEdits).push(text);
      this.current = { kind: 'text', text };
    } else {
      this.current = { kind: 'ignored' };
    }
  }

  onPartData(chunk: Buffer): void {
    const cur = this.current;
    if (cur?.kind === 'file') {
      const f = cur.file;
      f.size += chunk.length;
      if (f.size > this.maxFileBytes) {
        f.oversize = true;
        f.chunks = [];
      } else {
        f.chunks.push(chunk);
        f.hash.update(chunk);
      }
    } else if (cur?.kind === 'text') {
      cur.text.size += chunk.length;
      if (cur.text.size > MAX_TEXT_PART_BYTES) throw new MultipartError('text part too large');
      cur.text.chunks.push(chunk);
    }
  }

  onPartEnd(): void {
    this.current = undefined;
  }
}

/**
 * Decodes a text form field. Without an explicit `charset` parameter, Confluence has been observed to decode
 * text fields as Latin-1, which mangles non-ASCII comments; the stand-in copies that so a relay that omits the
 * charset is caught by its tests.
 */
function decodeTextPart(t: ReceivedText): string {
  const bytes = Buffer.concat(t.chunks);
  let charset = 'iso-8859-1';
  if (t.contentType !== undefined) {
    const { params } = parseHeaderWithParams(t.contentType);
    charset = (params.get('charset') ?? charset).toLowerCase();
  }
  if (charset === 'utf-8' || charset === 'utf8') {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new MultipartError('text part declared UTF-8 but is not valid UTF-8');
    }
  }
  if (charset === 'iso-8859-1' || charset === 'latin1' || charset === 'us-ascii') return bytes.toString('latin1');
  throw new MultipartError(`unsupported charset "${charset}" in text part`);
}

// ------------------------------------------------------------------------------------------------------------
// The server

class StandInServer implements ConfluenceStandIn {
  readonly requests: RecordedRequest[] = [];
  readonly installKey: { kid: string; privateKeyPem: string; publicKeyPem: string };
  origin = '';
  installKeysUrl = '';
  oauthTokenUrl = '';
  forgeJwksUrl = '';

  private readonly appKey: string;
  private readonly maxAttachmentBytes: number;
  private readonly sites = new Map<string, SiteState>();
  private readonly failRules: Array<FailRule & { remaining: number }> = [];
  private readonly mounts: Array<{ prefix: string; handler: MountHandler }> = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private attachmentCounter = 1_000_000;
  private readonly server: Server;
  private currentForgeKey: ForgeKey = generateForgeKey();
  private readonly forgeEnvironmentId = randomUUID();

  constructor(private readonly opts: StandInOptions) {
    this.appKey = opts.appKey ?? DEFAULT_APP_KEY;
    this.maxAttachmentBytes = opts.siteMaxAttachmentBytes ?? DEFAULT_SITE_MAX_ATTACHMENT_BYTES;
    const { publicKey, privateKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    this.installKey = { kid: `stand-in-${randomUUID()}`, privateKeyPem: privateKey, publicKeyPem: publicKey };
    // requestTimeout 0: throttled uploads of large files may legitimately take minutes.
    this.server = createServer({ requestTimeout: 0 }, (req, res) => this.onRequest(req, res));
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const { port } = this.server.address() as AddressInfo;
    this.origin = `http://127.0.0.1:${port}`;
    this.installKeysUrl = `${this.origin}/install-keys`;
    this.oauthTokenUrl = `${this.origin}${TOKEN_PATH}`;
    this.forgeJwksUrl = `${this.origin}${FORGE_JWKS_PATH}`;
  }

  get forgeKey(): ForgeKey {
    return { ...this.currentForgeKey };
  }

  rotateForgeKey(): ForgeKey {
    this.currentForgeKey = generateForgeKey();
    return this.forgeKey;
  }

  site(name = 'default'): Site {
    if (!/^[A-Za-z0-9._~-]+$/.test(name)) throw new Error(`site name must be a plain URL path segment: "${name}"`);
    let s = this.sites.get(name);
    if (!s) {
      s = new SiteState(name, {
        origin: this.origin,
        appKey: this.appKey,
        installKey: this.installKey,
        forgeKey: () => this.currentForgeKey,
        forgeEnvironmentId: this.forgeEnvironmentId,
      });
      this.sites.set(name, s);
    }
    return s;
  }

  mount(prefix: string, handler: MountHandler): void {
    if (!prefix.startsWith('/')) throw new Error('mount: the prefix must start with /');
    this.mounts.push({ prefix, handler });
  }

  failNext(rule: FailRule): void {
    if (rule.resetAfterBytes !== undefined) {
      if (!Number.isSafeInteger(rule.resetAfterBytes) || rule.resetAfterBytes < 0) {
        throw new Error('failNext: resetAfterBytes must be a non-negative integer');
      }
      if (rule.passThrough) throw new Error('failNext: resetAfterBytes cannot be combined with passThrough');
    }
    if (rule.stallAfterBytes !== undefined && (!rule.passThrough || !Number.isSafeInteger(rule.stallAfterBytes) || rule.stallAfterBytes < 0)) {
      throw new Error('failNext: stallAfterBytes needs passThrough and a non-negative integer');
    }
    this.failRules.push({ ...rule, remaining: rule.times ?? 1 });
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ----------------------------------------------------------------------------------------------------------

  private readonly trackTimer = (t: NodeJS.Timeout, done: boolean): void => {
    if (done) this.timers.delete(t);
    else this.timers.add(t);
  };

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    res.on('error', () => undefined); // the client may vanish mid-answer; nothing to do about it
    const method = (req.method ?? 'GET').toUpperCase();
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    // Mounted extensions (the sandbox's pages) are served as they are, not recorded.
    const mount = this.mounts.find((m) => path === m.prefix || path.startsWith(m.prefix.endsWith('/') ? m.prefix : `${m.prefix}/`));
    if (mount) {
      mount.handler(req, res);
      return;
    }
    const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1));
    const api = this.resolveApiPath(path);
    const siteName = api?.view?.site.name ?? SITE_PATH.exec(path)?.[1];
    const recordedQuery = Object.fromEntries(query);
    // Never keep an assertion, even one wrongly sent in the URL.
    if (path === TOKEN_PATH && 'assertion' in recordedQuery) recordedQuery.assertion = '[redacted]';
    const rec: RecordedRequest = {
      method,
      path,
      query: recordedQuery,
      authKind: authKindOf(req.headers.authorization),
      status: 0,
      ...(siteName !== undefined ? { siteName } : {}),
    };
    this.requests.push(rec);
    const isUpload = (method === 'POST' || method === 'PUT') && api !== undefined && UPLOAD_REST_PATH.test(api.rest);
    const ctx: RequestCtx = { req, res, method, rawUrl, path, query, rec, isUpload };
    void runHandler(res, () => this.dispatch(ctx), (status) => (rec.status = status)).catch(() => res.destroy());
  }

  /** Every answer of the endpoints goes through here (so a passThrough rule can hold it back). */
  private send(ctx: RequestCtx, status: number, headers: OutgoingHttpHeaders, body: string | Buffer): void {
    if (ctx.holdAnswer) {
      ctx.held = { status, headers, body };
      return;
    }
    ctx.rec.status = status;
    ctx.res.writeHead(status, headers);
    ctx.res.end(body);
  }

  private reply(ctx: RequestCtx, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    this.send(
      ctx,
      status,
      { 'content-type': 'application/json;charset=UTF-8', 'content-length': String(Buffer.byteLength(text)), ...headers },
      text,
    );
  }

  private async dispatch(ctx: RequestCtx): Promise<void> {
    const rule = this.takeFailRule(ctx);
    if (rule?.passThrough) return this.passThrough(ctx, rule);
    if (rule) return this.answerInjected(ctx, rule);
    return this.route(ctx);
  }

  /** Resolves `/sites/<name>/wiki/...` and `/ex/confluence/<cloudId>/wiki/...`; undefined for other paths. */
  private resolveApiPath(path: string): ApiPath | undefined {
    const siteMatch = SITE_PATH.exec(path);
    if (siteMatch) {
      const site = this.sites.get(siteMatch[1]);
      return {
        view: site && { site, via: 'site', base: site.baseUrl, context: site.contextPath },
        missing: `no site named ${siteMatch[1]}`,
        rest: siteMatch[2] ?? '/',
      };
    }
    const forgeMatch = FORGE_API_PATH.exec(path);
    if (forgeMatch) {
      const site = [...this.sites.values()].find((s) => s.cloudId === forgeMatch[1]);
      return {
        view: site && { site, via: 'forge', base: `${site.forgeApiBaseUrl}/wiki`, context: site.forgeContextPath },
        missing: `no site with cloudId ${forgeMatch[1]}`,
        rest: forgeMatch[2] ?? '/',
      };
    }
    return undefined;
  }

  private async route(ctx: RequestCtx): Promise<void> {
    if (ctx.isUpload) {
      const api = this.resolveApiPath(ctx.path);
      if (!api) throw new Error('unreachable: upload outside a site');
      const pageSegment = CONTENT_PATH.exec(api.rest)?.[1] ?? '';
      return this.upload(ctx, api, pageSegment);
    }

    // Every other endpoint takes at most a small JSON body; read it before answering anything.
    const body = await this.readSmallBody(ctx);

    const keyMatch = INSTALL_KEY_PATH.exec(ctx.path);
    if (keyMatch) {
      if (ctx.method !== 'GET') throw new HttpError(405, 'method not allowed', { allow: 'GET' });
      const kid = decodeSegment(keyMatch[1]);
      if (kid !== this.installKey.kid) throw new HttpError(404, `no install key with kid ${kid}`);
      this.send(ctx, 200, { 'content-type': 'text/plain' }, this.installKey.publicKeyPem);
      return;
    }

    if (ctx.path === TOKEN_PATH) {
      if (ctx.method !== 'POST') throw new HttpError(405, 'method not allowed', { allow: 'POST' });
      return this.tokenEndpoint(ctx, body);
    }

    if (ctx.path === FORGE_JWKS_PATH) {
      if (ctx.method !== 'GET') throw new HttpError(405, 'method not allowed', { allow: 'GET' });
      this.reply(ctx, 200, { keys: [jwkOf(this.currentForgeKey)] });
      return;
    }

    const api = this.resolveApiPath(ctx.path);
    if (!api) throw new HttpError(404, `no such endpoint: ${ctx.method} ${ctx.path}`);
    const view = api.view;
    if (!view) throw new HttpError(404, api.missing);
    const rest = api.rest;

    // Since changelog CHANGE-2328 Atlassian's edge refuses (403) any GET request that has a body.
    if (ctx.method === 'GET' && hasBody(ctx.req)) throw new HttpError(403, 'GET requests must not have a body');

    const content = CONTENT_PATH.exec(rest);
    if (content) {
      const pageId = decodeSegment(content[1]);
      if (content[2] === 'permission/check') {
        if (ctx.method !== 'POST') throw new HttpError(405, 'method not allowed', { allow: 'POST' });
        return this.permissionCheck(ctx, view, pageId, body);
      }
      if (content[2] === undefined) {
        if (ctx.method !== 'GET') throw new HttpError(405, 'method not allowed', { allow: 'GET' });
        return this.getContent(ctx, view, pageId);
      }
      if (ctx.method !== 'GET') throw new HttpError(405, 'method not allowed', { allow: 'GET, POST, PUT' });
      return this.listAttachments(ctx, view, pageId);
    }

    const download = DOWNLOAD_PATH.exec(rest);
    if (download) {
      if (ctx.method !== 'GET') throw new HttpError(405, 'method not allowed', { allow: 'GET' });
      return this.download(ctx, view, decodeSegment(download[1]), decodeSegment(download[2]));
    }

    throw new HttpError(404, `no such endpoint: ${ctx.method} ${rest}`);
  }

  private async readSmallBody(ctx: RequestCtx): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    const r = await readBody(ctx.req, {
      onChunk: (c) => {
        size += c.length;
        if (size > MAX_JSON_BODY_BYTES) throw new HttpError(413, 'request body too large');
        chunks.push(c);
      },
    });
    if (r.error !== undefined) throw r.error;
    return Buffer.concat(chunks);
  }

  // ---- fault injection ----

  private takeFailRule(ctx: RequestCtx): FailRule | undefined {
    const i = this.failRules.findIndex(
      (r) =>
        (r.method === undefined || r.method.toUpperCase() === ctx.method) &&
        (r.pathIncludes === undefined || ctx.path.includes(r.pathIncludes)),
    );
    if (i < 0) return undefined;
    const rule = this.failRules[i];
    if (--rule.remaining <= 0) this.failRules.splice(i, 1);
    return rule;
  }

  private resetSocket(ctx: RequestCtx): void {
    if (ctx.rec.reset) return;
    ctx.rec.reset = true;
    ctx.rec.status = 0;
    ctx.req.socket.resetAndDestroy();
  }

  private async answerInjected(ctx: RequestCtx, rule: FailRule): Promise<void> {
    ctx.rec.injected = true;
    const bytesPerSecond = ctx.isUpload ? this.opts.bytesPerSecond : undefined;

    if (rule.resetAfterBytes !== undefined) {
      const limit = rule.resetAfterBytes;
      if (limit > 0) {
        let seen = 0;
        try {
          await readBody(ctx.req, {
            bytesPerSecond,
            trackTimer: this.trackTimer,
            onChunk: (chunk) => {
              seen += chunk.length;
              if (seen >= limit) this.resetSocket(ctx);
            },
          });
        } catch {
          // Our own reset (or the client leaving) ends the body early.
        }
      }
      this.resetSocket(ctx);
      return;
    }

    // Token requests are counted per site even when the answer is injected (the body names the site).
    const isToken = ctx.path === TOKEN_PATH && ctx.method === 'POST';
    const chunks: Buffer[] = [];
    let size = 0;
    await readBody(ctx.req, {
      bytesPerSecond,
      trackTimer: this.trackTimer,
      onChunk: isToken
        ? (chunk) => {
            size += chunk.length;
            if (size <= MAX_JSON_BODY_BYTES) chunks.push(chunk);
          }
        : undefined,
    });
    if (isToken) this.countTokenRequest(Buffer.concat(chunks));
    if (rule.delayMs) await this.sleep(rule.delayMs);
    if (rule.resetConnection) {
      this.resetSocket(ctx);
      return;
    }
    const status = rule.status ?? 500;
    const headers = rule.headers ?? {};
    if (typeof rule.body === 'string') {
      this.send(ctx, status, { 'content-type': 'text/plain;charset=UTF-8', ...headers }, rule.body);
      return;
    }
    this.reply(ctx, status, rule.body ?? errorBody(status, `injected failure (HTTP ${status})`), headers);
  }

  /**
   * passThrough rule: the request is processed as usual (an upload is stored), then its answer, success or
   * error, is delayed by delayMs and/or replaced by a connection reset.
   */
  private async passThrough(ctx: RequestCtx, rule: FailRule): Promise<void> {
    ctx.rec.injected = true;
    ctx.holdAnswer = true;
    if (rule.stallAfterBytes !== undefined) ctx.stall = { afterBytes: rule.stallAfterBytes, ms: rule.stallMs ?? 0 };
    let failed = false;
    let error: unknown;
    try {
      await this.route(ctx);
    } catch (e) {
      failed = true;
      error = e;
    }
    if (rule.delayMs) await this.sleep(rule.delayMs);
    ctx.holdAnswer = false;
    if (rule.resetConnection) {
      this.resetSocket(ctx);
      return;
    }
    if (failed) throw error;
    const held = ctx.held;
    if (held) this.send(ctx, held.status, held.headers, held.body);
  }

  // ---- OAuth 2.0 authorization server ----

  private siteByOauthClientId(clientId: string): SiteState | undefined {
    for (const s of this.sites.values()) if (s.oauthClientId === clientId) return s;
    return undefined;
  }

  /** Counts a token request for the site its assertion's `iss` names (unverified; nothing is kept). */
  private countTokenRequest(body: Buffer): void {
    let assertion: string | null = null;
    try {
      assertion = new URLSearchParams(body.toString('utf8')).get('assertion');
    } catch {
      return;
    }
    const clientId = clientIdOfIssuer(assertion === null ? undefined : unverifiedIssuer(assertion));
    const site = clientId === undefined ? undefined : this.siteByOauthClientId(clientId);
    if (site) site.tokenRequests++;
  }

  private async tokenEndpoint(ctx: RequestCtx, body: Buffer): Promise<void> {
    // RFC 6749 §5.1: token answers must not be cached.
    const noStore = { 'cache-control': 'no-store', pragma: 'no-cache' };
    this.countTokenRequest(body);
    try {
      const request = parseTokenRequest(ctx.req.headers['content-type'], body, ctx.query);
      const { site, accountId } = verifyAssertion(request.assertion, (id) => this.siteByOauthClientId(id), this.origin);
      const accessToken = randomBytes(32).toString('base64url');
      const lifetime = site.tokenLifetimeSeconds;
      site.acceptBearer(accessToken, accountId, { expiresInSeconds: lifetime, scopes: request.scopes });
      this.reply(
        ctx,
        200,
        { access_token: accessToken, token_type: 'Bearer', expires_in: lifetime, scope: request.scopes.join(' ') },
        noStore,
      );
    } catch (e) {
      if (!(e instanceof OAuthError)) throw e;
      this.reply(ctx, e.status, { error: e.error, error_description: e.description }, noStore);
    }
  }

  // ---- authentication ----

  /**
   * App JWT (`Authorization: JWT <token>`, HS256 with the install's sharedSecret, `iss` = app key, qsh computed
   * over the path relative to the site baseUrl) or a registered bearer token (acts as a user).
   */
  private authenticate(ctx: RequestCtx, view: SiteView, need: 'read' | 'write'): Principal {
    const site = view.site;
    const header = ctx.req.headers.authorization;
    if (!header) throw new HttpError(401, 'authentication required (no Authorization header)');
    const m = /^(\S+)\s+(\S+)\s*$/.exec(header.trim());
    if (!m) throw new HttpError(401, 'malformed Authorization header');
    const scheme = m[1].toLowerCase();
    if (view.via === 'forge') {
      if (scheme !== 'bearer') throw new HttpError(401, `the API gateway only accepts OAuth 2.0 bearer tokens, not ${m[1]}`);
      return this.authenticateForgeToken(ctx, site, m[2]);
    }
    if (scheme === 'jwt') {
      this.verifyAppJwt(ctx, site, m[2]);
      return { kind: 'app' };
    }
    if (scheme === 'bearer') {
      if (site.bearerTokens.size === 0) throw new HttpError(401, 'bearer tokens not supported yet');
      const grant = site.bearerTokens.get(m[2]);
      if (grant === undefined) throw new HttpError(401, 'unknown bearer token');
      if (grant.expiresAtMs !== undefined && Date.now() >= grant.expiresAtMs) throw new HttpError(401, 'token expired');
      ctx.rec.accountId = grant.accountId;
      if (!scopesAllow(grant.scopes, need)) {
        throw new HttpError(403, `the token's scopes (${[...(grant.scopes ?? [])].join(' ')}) do not allow ${need === 'read' ? 'reading' : 'writing'}`);
      }
      return { kind: 'user', accountId: grant.accountId };
    }
    throw new HttpError(401, `unsupported Authorization scheme ${m[1]}`);
  }

  /** A token handed out with a Forge invocation for this site's cloudId (x-forge-oauth-user / -system). */
  private authenticateForgeToken(ctx: RequestCtx, site: SiteState, token: string): Principal {
    const grant = site.forgeTokens.get(token);
    if (grant === undefined) {
      const elsewhere = [...this.sites.values()].some((s) => s !== site && s.forgeTokens.has(token));
      throw new HttpError(401, elsewhere ? 'token not valid for this cloudId' : 'unknown bearer token');
    }
    if (Date.now() >= grant.expiresAtMs) throw new HttpError(401, 'token expired');
    if (grant.kind === 'app') return { kind: 'app' };
    const accountId = grant.accountId ?? '';
    ctx.rec.accountId = accountId;
    return { kind: 'user', accountId };
  }

  private verifyAppJwt(ctx: RequestCtx, site: SiteState, token: string): void {
    let decoded: unknown;
    try {
      // Algorithm pinned to HS256: a token whose header says anything else (none, HS512, RS256) is refused.
      decoded = decodeSymmetric(token, site.sharedSecret, SymmetricAlgorithm.HS256);
    } catch (e) {
      throw new HttpError(401, `JWT rejected: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!isRecord(decoded)) throw new HttpError(401, 'JWT rejected: claims are not a JSON object');
    const claims = decoded;
    if (claims.iss !== this.appKey) {
      throw new HttpError(401, `JWT rejected: iss ${JSON.stringify(claims.iss)} is not the app key ${this.appKey}`);
    }
    if (typeof claims.exp !== 'number') throw new HttpError(401, 'JWT rejected: exp claim missing');
    const now = Date.now() / 1000;
    if (now >= claims.exp + JWT_CLOCK_SKEW_SECONDS) throw new HttpError(401, 'JWT rejected: token expired');
    if (typeof claims.qsh !== 'string') throw new HttpError(401, 'JWT rejected: qsh claim missing');
    // The canonical request is relative to the product baseUrl, so the `/sites/<name>/wiki` context path is
    // stripped, exactly as `/wiki` is for https://x.atlassian.net/wiki.
    const request = fromMethodAndUrl(ctx.method, `${this.origin}${ctx.rawUrl}`);
    const expected = createQueryStringHash(request, false, site.baseUrl);
    if (claims.qsh !== expected) {
      const canonical = createCanonicalRequest(request, false, site.baseUrl);
      throw new HttpError(401, `JWT rejected: qsh does not match the canonical request "${canonical}"`);
    }
  }

  // ---- endpoints ----

  private async permissionCheck(ctx: RequestCtx, view: SiteView, pageId: string, body: Buffer): Promise<void> {
    const site = view.site;
    this.authenticate(ctx, view, 'read');
    const page = site.pages.get(pageId);
    if (!page) throw new HttpError(404, `No content found with id: ${pageId}`);
    const type = ctx.req.headers['content-type'];
    if (!type || !/^application\/json\s*(;|$)/i.test(type)) {
      throw new HttpError(415, 'Unsupported Media Type: expected application/json');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new HttpError(400, 'request body is not valid JSON');
    }
    const subject = isRecord(parsed) ? parsed.subject : undefined;
    const operation = isRecord(parsed) ? parsed.operation : undefined;
    if (
      !isRecord(subject) ||
      subject.type !== 'user' ||
      typeof subject.identifier !== 'string' ||
      subject.identifier === '' ||
      (operation !== 'read' && operation !== 'update')
    ) {
      throw new HttpError(400, "expected {subject: {type: 'user', identifier: accountId}, operation: 'read' | 'update'}");
    }
    // Every user may view every page here; editing is limited by the page's editors.
    const hasPermission = operation === 'read' || site.canEdit(page, subject.identifier);
    this.reply(ctx, 200, { hasPermission, errors: [] });
  }

  /** GET /rest/api/content/{id}: lets a client tell "page gone" from the other 404s of an upload. */
  private async getContent(ctx: RequestCtx, view: SiteView, pageId: string): Promise<void> {
    const site = view.site;
    this.authenticate(ctx, view, 'read');
    const page = site.pages.get(pageId);
    if (!page) throw new HttpError(404, `No content found with id: ${pageId}`);
    const id = encodeURIComponent(page.id);
    this.reply(ctx, 200, {
      id: page.id,
      type: 'page',
      status: 'current',
      title: page.title,
      _links: {
        webui: `/pages/viewpage.action?pageId=${id}`,
        self: `${view.base}/rest/api/content/${id}`,
        base: view.base,
        context: view.context,
      },
    });
  }

  private async listAttachments(ctx: RequestCtx, view: SiteView, pageId: string): Promise<void> {
    const site = view.site;
    this.authenticate(ctx, view, 'read');
    const page = site.pages.get(pageId);
    if (!page) throw new HttpError(404, `No content found with id: ${pageId}`);
    const filename = ctx.query.get('filename');
    const matches = [...page.attachments.values()].filter((a) => filename === null || a.title === filename);
    const results = matches.map((a) => this.attachmentJson(view, a));
    this.reply(ctx, 200, {
      results,
      start: 0,
      limit: Math.max(25, results.length),
      size: results.length,
      _links: { base: view.base, context: view.context },
    });
  }

  private async download(ctx: RequestCtx, view: SiteView, pageId: string, title: string): Promise<void> {
    // Downloads on the site path need no authentication here; behind the API gateway everything does.
    if (view.via === 'forge') this.authenticate(ctx, view, 'read');
    const att = view.site.pages.get(pageId)?.attachments.get(title);
    if (!att) throw new HttpError(404, `no attachment ${title} on content ${pageId}`);
    this.send(
      ctx,
      200,
      {
        'content-type': att.mediaType,
        'content-length': String(att.bytes.length),
        'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(att.title)}`,
      },
      att.bytes,
    );
  }

  /**
   * POST (create only) and PUT (create or add a version) of .../child/attachment. The whole body is always read
   * (throttled if configured) before answering, whatever the outcome, so clients see our status instead of a
   * broken pipe.
   */
  private async upload(ctx: RequestCtx, api: ApiPath, pageSegment: string): Promise<void> {
    let early: unknown;
    let collector: UploadCollector | undefined;
    let principal: Principal = { kind: 'app' };
    let page: Page | undefined;
    const view = api.view;
    const site = view?.site;
    try {
      if (!view || !site) throw new HttpError(404, api.missing);
      const pageId = decodeSegment(pageSegment);
      principal = this.authenticate(ctx, view, 'write');
      // Multipart posts without this header fail Atlassian's XSRF filter. Both spellings seen in working
      // clients (`nocheck` in Confluence's docs, `no-check` in Jira's and @forge/bridge) are accepted.
      const xsrf = ctx.req.headers['x-atlassian-token'];
      if (xsrf !== 'no-check' && xsrf !== 'nocheck') throw new HttpError(403, 'XSRF check failed');
      const boundary = this.multipartBoundary(ctx.req.headers['content-type']);
      page = site.pages.get(pageId);
      if (!page) throw new HttpError(404, `No content found with id: ${pageId}`);
      if (page.attachmentsDisabled) throw new HttpError(403, 'Attachments are disabled for this content');
      if (principal.kind === 'user' && !site.canEdit(page, principal.accountId)) {
        throw new HttpError(403, `User ${principal.accountId} is not permitted to add attachments to content ${pageId}`);
      }
      collector = new UploadCollector(boundary, this.maxAttachmentBytes);
    } catch (e) {
      early = e;
    }

    const c = collector;
    const read = await readBody(ctx.req, {
      bytesPerSecond: this.opts.bytesPerSecond,
      onChunk: c ? (chunk) => c.write(chunk) : undefined,
      trackTimer: this.trackTimer,
      stall: ctx.stall,
    });
    if (early !== undefined) throw early;
    if (!c || !view || !site || !page) throw new Error('unreachable: upload state incomplete');
    try {
      if (read.error !== undefined) throw read.error;
      c.finish();
    } catch (e) {
      if (e instanceof MultipartError) throw new HttpError(400, `malformed multipart body: ${e.message}`);
      throw e;
    }
    const results = this.storeUpload(ctx, site, page, c, principal);
    this.reply(ctx, 200, {
      results: results.map((a) => this.attachmentJson(view, a)),
      size: results.length,
      _links: { base: view.base, context: view.context },
    });
  }

  private multipartBoundary(contentType: string | undefined): string {
    if (!contentType) throw new HttpError(415, 'Unsupported Media Type: expected multipart/form-data');
    let parsed: { type: string; params: Map<string, string> };
    try {
      parsed = parseHeaderWithParams(contentType);
    } catch {
      throw new HttpError(400, `malformed Content-Type "${contentType}"`);
    }
    if (parsed.type.toLowerCase() !== 'multipart/form-data') {
      throw new HttpError(415, `Unsupported Media Type ${parsed.type}: expected multipart/form-data`);
    }
    const boundary = parsed.params.get('boundary');
    if (!boundary) throw new HttpError(400, 'multipart/form-data without boundary');
    return boundary;
  }

  /** Validates every file of the request, then stores all of them or none. */
  private storeUpload(
    ctx: RequestCtx,
    site: SiteState,
    page: Page,
    c: UploadCollector,
    principal: Principal,
  ): StoredAttachment[] {
    const bad = (msg: string) => new HttpError(400, msg);
    let comments: string[] = [];
    let minorEdit = false;
    try {
      comments = c.comments.map(decodeTextPart);
      if (c.minorEdits.length > 1) throw bad('more than one minorEdit field');
      if (c.minorEdits.length === 1) {
        const v = decodeTextPart(c.minorEdits[0]).trim().toLowerCase();
        if (v !== 'true' && v !== 'false') throw bad(`minorEdit must be "true" or "false", got "${v}"`);
        minorEdit = v === 'true';
      }
    } catch (e) {
      if (e instanceof MultipartError) throw bad(`malformed multipart body: ${e.message}`);
      throw e;
    }
    if (c.files.length === 0) throw bad('no file part named "file" in the request');
    // Comments are optional, but when present Confluence matches comment i to file i, so the counts must agree.
    if (comments.length > 0 && comments.length !== c.files.length) {
      throw bad(`${comments.length} comment field(s) for ${c.files.length} file(s): send one comment per file or none`);
    }
    for (const f of c.files) {
      if (f.filename.trim() === '') throw bad('file part with an empty filename');
      // Confluence answers an attachment above the site's limit with 404, not 413.
      if (f.oversize) {
        throw new HttpError(404, `Attachment ${f.filename} exceeds the maximum attachment size of ${this.maxAttachmentBytes} bytes`);
      }
    }
    if (ctx.method === 'POST') {
      const seen = new Set<string>();
      for (const f of c.files) {
        if (page.attachments.has(f.filename) || seen.has(f.filename)) {
          throw bad(`Cannot add a new attachment with same file name as an existing attachment: ${f.filename}`);
        }
        seen.add(f.filename);
      }
    }

    const createdBy = principal.kind === 'app' ? 'app' : principal.accountId;
    return c.files.map((f, i) => {
      const bytes = Buffer.concat(f.chunks, f.size);
      const existing = page.attachments.get(f.filename);
      const att: StoredAttachment = {
        id: existing?.id ?? `att${++this.attachmentCounter}`,
        pageId: page.id,
        title: f.filename,
        fileSize: bytes.length,
        mediaType: f.contentType ?? 'application/octet-stream',
        sha256: f.hash.digest('hex'),
        ...(comments[i] !== undefined ? { comment: comments[i] } : {}),
        minorEdit,
        version: (existing?.version ?? 0) + 1,
        createdBy,
        fileId: randomUUID(),
        when: new Date().toISOString(),
        bytes,
      };
      page.attachments.set(att.title, att);
      return att;
    });
  }

  /** One attachment in Confluence's v1 REST shape. */
  private attachmentJson(view: SiteView, a: StoredAttachment): Record<string, unknown> {
    const site = view.site;
    const by =
      a.createdBy === 'app'
        ? { type: 'known', accountId: site.appAccountId, accountType: 'app' }
        : { type: 'known', accountId: a.createdBy, accountType: 'atlassian' };
    const modificationDate = Date.parse(a.when);
    const pageId = encodeURIComponent(a.pageId);
    return {
      id: a.id,
      type: 'attachment',
      status: 'current',
      title: a.title,
      version: { number: a.version, when: a.when, message: a.comment ?? '', minorEdit: a.minorEdit, by },
      container: { id: a.pageId, type: 'page' },
      metadata: { mediaType: a.mediaType, comment: a.comment },
      extensions: {
        mediaType: a.mediaType,
        fileSize: this.opts.fileSizeAsString ? String(a.fileSize) : a.fileSize,
        comment: a.comment,
        fileId: a.fileId,
        collectionName: `contentId-${a.pageId}`,
      },
      _links: {
        webui: `/pages/viewpageattachments.action?pageId=${pageId}&preview=${encodeURIComponent(`/${a.pageId}/${a.id}/${a.title}`)}`,
        download: `/download/attachments/${pageId}/${encodeURIComponent(a.title)}?version=${a.version}&modificationDate=${modificationDate}&api=v2`,
        self: `${view.base}/rest/api/content/${a.id}`,
      },
    };
  }
}

/** Starts a stand-in on 127.0.0.1 with an ephemeral port. Call close() when done. */
export async function startConfluenceStandIn(opts: StandInOptions = {}): Promise<ConfluenceStandIn> {
  const s = new StandInServer(opts);
  await s.listen();
  return s;
}
