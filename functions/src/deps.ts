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
import type { UploadIdentity } from './uploads/relay-file';

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

  return {
    config,
    limits: uploadLimits(config),
    tenants: dynamoTenantStore(client, config.tableName),
    tickets: dynamoTicketStore(client, config.tableName),
    fetchInstallKey: installKeyFetcher(config.connectInstallKeysUrl),
    nowSeconds,
    appTarget,
    identityFor,
  };
}

export type RelayDeps = ReturnType<typeof buildDeps>;
