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

/**
 * The wiring every handler shares, built once per container at cold start.
 * Handlers take what they need from here and pass it to plain modules.
 */
export function buildDeps(config: RelayConfig = getConfig()) {
  const client = documentClient(config);
  return {
    config,
    limits: uploadLimits(config),
    tenants: dynamoTenantStore(client, config.tableName),
    tickets: dynamoTicketStore(client, config.tableName),
    fetchInstallKey: installKeyFetcher(config.connectInstallKeysUrl),
    nowSeconds,
    /** Confluence as the app (Connect JWT with qsh). */
    appTarget(tenant: Tenant): ConfluenceTarget {
      // Re-check the stored base URL before every outbound call (SSRF defence in depth).
      if (!isAllowedUrl(tenant.baseUrl, config.allowedTenantHosts, config.allowHttpTenants)) {
        throw new AppError(403, 'tenant_not_allowed', 'This relay does not serve that site.');
      }
      return {
        baseUrl: tenant.baseUrl,
        authorize: (method, url) =>
          appAuthorization({ method, url, tenantBaseUrl: tenant.baseUrl, appKey: config.appKey, sharedSecret: tenant.sharedSecret }),
      };
    },
  };
}

export type RelayDeps = ReturnType<typeof buildDeps>;
