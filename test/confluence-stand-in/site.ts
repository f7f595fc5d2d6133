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
import {
  DEFAULT_FIT_LIFETIME_SECONDS,
  DEFAULT_FORGE_TOKEN_LIFETIME_SECONDS,
  defaultFitClaims,
  newForgeToken,
  signRs256,
  withPathOverrides,
  type ForgeKey,
  type ForgeTokenGrant,
} from './forge';
import type {
  AcceptBearerOptions,
  ContextTokenOptions,
  ForgeInvocation,
  ForgeInvocationOptions,
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
  /** The current Forge signing key (it can be rotated). */
  forgeKey(): ForgeKey;
  /** The Forge app environment id (one per stand-in). */
  forgeEnvironmentId: string;
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
  sharedSecret = randomBytes(32).toString('base64url');
  // Atlassian accountIds of app bot users look like '557058:<uuid>'.
  readonly appAccountId = `557058:${randomUUID()}`;
  readonly oauthClientId = randomBytes(24).toString('base64url');
  readonly pages = new Map<string, Page>();
  /** Bearer token -> what it stands for. Expired tokens stay, so they can be told apart from unknown ones. */
  readonly bearerTokens = new Map<string, BearerGrant>();
  tokenLifetimeSeconds = 900;
  tokenRequests = 0;
  readonly cloudId = randomUUID();
  readonly forgeInstallationId = `ari:cloud:ecosystem::installation/${randomUUID()}`;
  readonly forgeApiBaseUrl: string;
  /** `/ex/confluence/<cloudId>/wiki`: the context path of the REST API behind the API gateway. */
  readonly forgeContextPath: string;
  readonly siteUrl: string;
  forgeTokenLifetimeSeconds = DEFAULT_FORGE_TOKEN_LIFETIME_SECONDS;
  /** OAuth tokens handed out with Forge invocations (valid only under forgeApiBaseUrl). Expired ones stay. */
  readonly forgeTokens = new Map<string, ForgeTokenGrant>();

  constructor(
    readonly name: string,
    private readonly env: SiteEnv,
  ) {
    this.contextPath = `/sites/${name}/wiki`;
    this.baseUrl = `${env.origin}${this.contextPath}`;
    this.siteUrl = `${env.origin}/sites/${name}`;
    this.forgeContextPath = `/ex/confluence/${this.cloudId}/wiki`;
    this.forgeApiBaseUrl = `${env.origin}/ex/confluence/${this.cloudId}`;
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
    for (const grant of this.forgeTokens.values()) {
      if (grant.expiresAtMs > now) grant.expiresAtMs = now;
    }
  }

  forgeInvocation(opts: ForgeInvocationOptions): ForgeInvocation {
    const wantUser = opts.userToken ?? opts.accountId !== undefined;
    const wantSystem = opts.systemToken ?? true;
    if (wantUser && opts.accountId === undefined) throw new Error('forgeInvocation: a user token needs an accountId');
    const key = this.env.forgeKey();
    const iat = nowSeconds();
    const claims = withPathOverrides(
      defaultFitClaims(
        {
          appId: opts.appId,
          cloudId: this.cloudId,
          installationId: this.forgeInstallationId,
          apiBaseUrl: this.forgeApiBaseUrl,
          siteUrl: this.siteUrl,
          environmentId: this.env.forgeEnvironmentId,
        },
        {
          accountId: opts.accountId,
          contentId: opts.contentId,
          iat,
          expiresInSeconds: opts.expiresInSeconds ?? DEFAULT_FIT_LIFETIME_SECONDS,
        },
      ),
      opts.claims,
    );
    const header = withPathOverrides({ alg: 'RS256', kid: key.kid, typ: 'JWT' }, opts.header);
    const fit = signRs256(header, claims, opts.privateKeyPem ?? key.privateKeyPem);
    const headers: Record<string, string> = { authorization: `Bearer ${fit}` };
    const expiresAtMs = Date.now() + this.forgeTokenLifetimeSeconds * 1000;
    if (wantUser) {
      const token = newForgeToken();
      this.forgeTokens.set(token, { kind: 'user', accountId: opts.accountId, appId: opts.appId, expiresAtMs });
      headers['x-forge-oauth-user'] = token;
    }
    if (wantSystem) {
      const token = newForgeToken();
      this.forgeTokens.set(token, { kind: 'app', appId: opts.appId, expiresAtMs });
      headers['x-forge-oauth-system'] = token;
    }
    return { fit, headers, claims };
  }

  rotateSharedSecret(): void {
    this.sharedSecret = randomBytes(32).toString('base64url');
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
