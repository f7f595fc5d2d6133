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
import { relayFile, type RelayFileOptions, type UploadIdentity } from './uploads/relay-file';
import { uploadAttachment, type UploadOptions } from './confluence/client';
import type { AttachmentResult, DeclaredFile, TicketRecord } from './store/ticket-store';
import { s3StagingBucket } from './staging/s3';
import { MetricName, MetricUnit, metrics } from './core/metrics';

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
    return async (tenant: Tenant, ticket: TicketRecord, file: DeclaredFile, open: RelayFileOptions['open']): Promise<AttachmentResult> => {
      const identity = identityFor(tenant, ticket.accountId);
      options.onIdentity?.(identity.kind);
      const result = await relayFile({
        identity,
        appTarget: appTarget(tenant),
        contentId: ticket.contentId,
        file,
        comment: ticket.comment,
        minorEdit: ticket.minorEdit,
        policy: config.onNameConflict,
        open,
        upload: timedUpload,
        deadlineMs: options.deadlineMs,
        uploadTimeoutMs: config.upstreamTimeoutMs,
        callTimeoutMs: config.apiCallTimeoutMs,
        onSiteLimitExceeded: (bytes) => tenants.recordSiteLimit(tenant.tenantId, { refusedBytes: bytes, atSeconds: nowSeconds() }),
      });
      // A success at or above a remembered refusal means the site's limit was raised.
      const refused = tenant.siteLimit?.refusedBytes;
      if (refused !== undefined && file.size >= refused) await tenants.recordSiteLimit(tenant.tenantId, { acceptedBytes: file.size });
      return result;
    };
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
  };
}

export type RelayDeps = ReturnType<typeof buildDeps>;
