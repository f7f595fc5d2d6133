import { getConfig, type RelayConfig } from './core/config';
import { nowSeconds } from './core/clock';
import { appAuthorization } from './connect/jwt';
import { installKeyFetcher } from './connect/install-keys';
import type { ConfluenceTarget } from './confluence/client';
import { documentClient } from './store/dynamo';
import { dynamoTenantStore, type Tenant } from './store/tenant-store';
import { dynamoTicketStore } from './store/ticket-store';
import { uploadLimits } from './uploads/limits';
import { isAllowedUrl } from './core/hosts';
import { AppError } from './core/errors';
import { userTokenProvider } from './confluence/oauth';
import { relayFile, type FileRelay, type UploadIdentity } from './uploads/relay-file';
import { uploadAttachment, type UploadOptions } from './confluence/client';
import type { AttachmentResult, TicketRecord } from './store/ticket-store';
import { s3StagingBucket } from './staging/s3';
import { MetricName, MetricUnit, metrics } from './core/metrics';
import { tokenSealerFor } from './forge/token-sealer';
import { forgeKeyResolver } from './forge/jwks';

/**
 * The wiring every handler shares, built once per container at cold start.
 * Handlers take what they need from here and pass it to plain modules.
 */
export function buildDeps(config: RelayConfig = getConfig()) {
  const client = documentClient(config);
  const userTokens = userTokenProvider(config.oauthTokenUrl);

  /** Confluence as the app (Connect JWT with qsh). */
  function appTarget(tenant: Tenant): ConfluenceTarget {
    // Re-check the stored base URL before every outbound call (SSRF defence in depth).
    if (!isAllowedUrl(tenant.baseUrl, config.allowedTenantHosts, config.allowHttpTenants)) {
      throw new AppError(403, 'tenant_not_allowed', 'This relay does not serve that site.');
    }
    return {
      baseUrl: tenant.baseUrl,
      authorize: (method, url) =>
        appAuthorization({ method, url, tenantBaseUrl: tenant.baseUrl, appKey: config.appKey, sharedSecret: tenant.sharedSecret }),
    };
  }

  /**
   * Who uploads: the user (OAuth 2.0 JWT bearer, so Confluence records them as
   * the author and applies their rights) when UPLOAD_AS=user and the tenant
   * has an oauthClientId; otherwise the app, after the ticket-time permission check.
   */
  function identityFor(tenant: Tenant, accountId: string): UploadIdentity & { kind: 'user' | 'app' } {
    const app = appTarget(tenant);
    if (config.uploadAs !== 'user' || !tenant.oauthClientId) return { kind: 'app', target: async () => app };
    const request = {
      tenantId: tenant.tenantId,
      baseUrl: tenant.baseUrl,
      oauthClientId: tenant.oauthClientId,
      sharedSecret: tenant.sharedSecret,
      accountId,
    };
    return {
      kind: 'user',
      async target() {
        const token = await userTokens.get(request, config.apiCallTimeoutMs);
        return { baseUrl: tenant.baseUrl, authorize: () => `Bearer ${token}` };
      },
      async renew() {
        userTokens.invalidate(request);
      },
    };
  }

  const tenants = dynamoTenantStore(client, config.tableName);
  const sealer = tokenSealerFor(config);

  /** Confluence through Forge's API gateway with a bearer token (host re-checked: SSRF). */
  function forgeTarget(apiBaseUrl: string, token: string): ConfluenceTarget {
    if (!isAllowedUrl(apiBaseUrl, config.allowedForgeApiHosts, config.allowHttpTenants)) {
      throw new AppError(403, 'tenant_not_allowed', 'This relay does not serve that site.');
    }
    return { baseUrl: `${apiBaseUrl}/wiki`, authorize: () => `Bearer ${token}` };
  }

  /**
   * Whose identity a ticket's uploads use: a Forge ticket's own token (the
   * user's, or the app's), else the Connect identity of its tenant. Also the
   * "app view" of the site for page-existence checks.
   */
  async function accessFor(
    tenant: Tenant | undefined,
    ticket: TicketRecord,
  ): Promise<{ identity: UploadIdentity & { kind: 'user' | 'app' }; app: ConfluenceTarget }> {
    if (ticket.forge) {
      if (!sealer) throw new AppError(500, 'internal_error', 'No key to open Forge tokens.', { expose: false });
      const target = forgeTarget(ticket.forge.apiBaseUrl, await sealer.open(ticket.forge.sealedToken, ticket.ticketHash));
      return { identity: { kind: ticket.forge.tokenKind === 'user' ? 'user' : 'app', target: async () => target }, app: target };
    }
    if (!tenant) throw new AppError(401, 'unauthorized', 'Missing or invalid credentials.', { reason: 'tenant_gone' });
    return { identity: identityFor(tenant, ticket.accountId), app: appTarget(tenant) };
  }

  async function timedUpload(options: UploadOptions): Promise<AttachmentResult> {
    const started = Date.now();
    try {
      return await uploadAttachment(options);
    } finally {
      metrics.addMetric(MetricName.ConfluenceLatency, MetricUnit.Milliseconds, Date.now() - started);
    }
  }

  /**
   * The one way a file reaches Confluence, for direct and staged uploads alike:
   * the tenant's upload identity, the conflict policy, retries until
   * `deadlineMs`, and what Confluence taught us about the site's size limit.
   */
  function fileRelay(options: { deadlineMs: number; onIdentity?(kind: 'user' | 'app'): void }) {
    const relay: FileRelay = async (tenant, ticket, file, open, gate, refusal) => {
      const { identity, app } = await accessFor(tenant, ticket);
      options.onIdentity?.(identity.kind);
      const result = await relayFile({
        identity,
        appTarget: app,
        contentId: ticket.contentId,
        file,
        comment: ticket.comment,
        minorEdit: ticket.minorEdit,
        policy: config.onNameConflict,
        open,
        gate,
        refusal,
        upload: timedUpload,
        deadlineMs: options.deadlineMs,
        uploadTimeoutMs: config.upstreamTimeoutMs,
        callTimeoutMs: config.apiCallTimeoutMs,
        onSiteLimitExceeded: tenant
          ? (bytes) => tenants.recordSiteLimit(tenant.tenantId, { refusedBytes: bytes, atSeconds: nowSeconds() })
          : undefined,
      });
      // A success at or above a remembered refusal means the site's limit was raised.
      const refused = tenant?.siteLimit?.refusedBytes;
      if (tenant && refused !== undefined && file.size >= refused) await tenants.recordSiteLimit(tenant.tenantId, { acceptedBytes: file.size });
      return result;
    };
    return relay;
  }

  return {
    config,
    limits: uploadLimits(config),
    tenants,
    staging: config.stagingBucket ? s3StagingBucket(config, config.stagingBucket) : undefined,
    fileRelay,
    tickets: dynamoTicketStore(client, config.tableName),
    fetchInstallKey: installKeyFetcher(config.connectInstallKeysUrl),
    nowSeconds,
    appTarget,
    identityFor,
    forgeTarget,
    sealer,
    resolveForgeKey: forgeKeyResolver(config.forgeJwksUrl),
  };
}

export type RelayDeps = ReturnType<typeof buildDeps>;
