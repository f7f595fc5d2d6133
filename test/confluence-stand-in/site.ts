/**
 * One Confluence Cloud site (tenant) of the stand-in: its install secrets, pages, attachments, and the tokens
 * Confluence would mint for the app on this site.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import {
  AsymmetricAlgorithm,
  SymmetricAlgorithm,
  createQueryStringHash,
  encodeAsymmetric,
  encodeSymmetric,
  fromMethodAndUrl,
} from 'atlassian-jwt';
import type {
  AcceptBearerOptions,
  ContextTokenOptions,
  InstallRequest,
  InstallRequestOptions,
  PageOptions,
  Site,
  StoredAttachment,
} from './types';

/** Things a site needs from the stand-in that owns it. */
export interface SiteEnv {
  origin: string;
  appKey: string;
  installKey: { kid: string; privateKeyPem: string };
}

export interface Page {
  id: string;
  title: string;
  editors: ReadonlySet<string> | '*';
  attachmentsDisabled: boolean;
  /** Keyed by title, in creation order. */
  attachments: Map<string, StoredAttachment>;
}

/** What a bearer token stands for. */
export interface BearerGrant {
  accountId: string;
  /** Epoch ms from which the token is refused as expired; undefined = never. */
  expiresAtMs?: number;
  /** Connect scopes of the token; undefined = all. */
  scopes?: ReadonlySet<string>;
}

/** Merges overrides into an object; an override whose value is undefined deletes the key. */
function withOverrides(base: Record<string, unknown>, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export class SiteState implements Site {
  readonly baseUrl: string;
  readonly contextPath: string;
  readonly clientKey = randomUUID();
  // 32 random bytes, base64url: the shape of a real Connect sharedSecret is opaque; length is what matters.
  readonly sharedSecret = randomBytes(32).toString('base64url');
  // Atlassian accountIds of app bot users look like '557058:<uuid>'.
  readonly appAccountId = `557058:${randomUUID()}`;
  readonly oauthClientId = randomBytes(24).toString('base64url');
  readonly pages = new Map<string, Page>();
  /** Bearer token -> what it stands for. Expired tokens stay, so they can be told apart from unknown ones. */
  readonly bearerTokens = new Map<string, BearerGrant>();
  tokenLifetimeSeconds = 900;
  tokenRequests = 0;

  constructor(
    readonly name: string,
    private readonly env: SiteEnv,
  ) {
    this.contextPath = `/sites/${name}/wiki`;
    this.baseUrl = `${env.origin}${this.contextPath}`;
  }

  addPage(id: string, opts: PageOptions = {}): void {
    const editors = opts.editors === undefined || opts.editors === '*' ? '*' : new Set(opts.editors);
    const existing = this.pages.get(id);
    this.pages.set(id, {
      id,
      title: opts.title ?? `Page ${id}`,
      editors,
      attachmentsDisabled: opts.attachmentsDisabled ?? false,
      attachments: existing?.attachments ?? new Map(),
    });
  }

  removePage(id: string): void {
    this.pages.delete(id);
  }

  attachments(pageId: string): StoredAttachment[] {
    return [...(this.pages.get(pageId)?.attachments.values() ?? [])].map((a) => ({ ...a }));
  }

  allAttachments(): StoredAttachment[] {
    return [...this.pages.keys()].flatMap((id) => this.attachments(id));
  }

  canEdit(page: Page, accountId: string): boolean {
    return page.editors === '*' || page.editors.has(accountId);
  }

  acceptBearer(token: string, accountId: string, opts: AcceptBearerOptions = {}): void {
    this.bearerTokens.set(token, {
      accountId,
      ...(opts.expiresInSeconds !== undefined ? { expiresAtMs: Date.now() + opts.expiresInSeconds * 1000 } : {}),
      ...(opts.scopes !== undefined ? { scopes: new Set(opts.scopes) } : {}),
    });
  }

  expireBearerTokens(): void {
    const now = Date.now();
    for (const grant of this.bearerTokens.values()) {
      if (grant.expiresAtMs === undefined || grant.expiresAtMs > now) grant.expiresAtMs = now;
    }
  }

  installRequest(opts: InstallRequestOptions): InstallRequest {
    const eventType = opts.eventType ?? 'installed';
    const payload = withOverrides(
      {
        key: this.env.appKey,
        clientKey: this.clientKey,
        // Only the installed event hands over the secret.
        ...(eventType === 'installed' ? { sharedSecret: this.sharedSecret } : {}),
        baseUrl: this.baseUrl,
        displayUrl: this.baseUrl,
        productType: 'confluence',
        description: `Confluence stand-in site ${this.name}`,
        eventType,
        serverVersion: '6452',
        pluginsVersion: '1000.0.0-stand-in',
        oauthClientId: this.oauthClientId,
      },
      opts.payload,
    );
    const path = opts.path ?? `/lifecycle/${eventType}`;
    const iat = nowSeconds();
    // The relay verifies qsh against its own descriptor baseUrl, so any path prefix of relayBaseUrl (e.g. an
    // API Gateway stage) is stripped from `path` before hashing.
    const qsh = createQueryStringHash(fromMethodAndUrl('POST', path), false, opts.relayBaseUrl);
    const claims = withOverrides(
      { iss: this.clientKey, aud: opts.relayBaseUrl, iat, exp: iat + 180, qsh },
      opts.claims,
    );
    const token = encodeAsymmetric(
      claims,
      opts.privateKeyPem ?? this.env.installKey.privateKeyPem,
      AsymmetricAlgorithm.RS256,
      { kid: opts.kid ?? this.env.installKey.kid },
    );
    return { body: JSON.stringify(payload), authorization: `JWT ${token}`, token };
  }

  contextToken(opts: ContextTokenOptions): string {
    const iat = nowSeconds();
    const claims = withOverrides(
      {
        iss: this.clientKey,
        sub: opts.accountId,
        qsh: opts.qsh ?? 'context-qsh',
        iat,
        exp: iat + (opts.expiresInSeconds ?? 900),
      },
      opts.claims,
    );
    return encodeSymmetric(claims, this.sharedSecret, SymmetricAlgorithm.HS256);
  }
}
