import type { RelayConfig } from '../core/config';
import { AppError, badRequest, unauthorized } from '../core/errors';
import { isAllowedUrl } from '../core/hosts';
import type { Tenant, TenantStore } from '../store/tenant-store';
import type { InstallKeyFetcher } from './install-keys';
import { checkTimes, constantTimeEqual, peekJwt, relayQsh, tokenFromAuthorization, verifyRs256 } from './jwt';

export interface LifecycleRequest {
  method: string;
  /** Path and query as received, e.g. `/lifecycle/installed`. */
  target: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
}

export interface LifecycleDeps {
  config: Pick<RelayConfig, 'relayBaseUrl' | 'allowedTenantHosts' | 'allowHttpTenants'>;
  fetchInstallKey: InstallKeyFetcher;
  tenants: TenantStore;
  nowSeconds: () => number;
}

/**
 * Verifies a signed-install lifecycle callback (atlassian.md §2): RS256 with
 * the key named by `kid`, `aud` = our base URL, `iss` = the body's clientKey,
 * `qsh` of this very request, `exp`. Returns the verified clientKey.
 */
export async function verifyLifecycleRequest(request: LifecycleRequest, deps: LifecycleDeps): Promise<string> {
  const token = tokenFromAuthorization(request.authorization, 'JWT');
  const { header } = peekJwt(token);
  // Pin the algorithm before any key is fetched: a symmetric (pre-signed-install)
  // token or alg:none is refused here.
  if (header.alg !== 'RS256') throw unauthorized('algorithm_not_allowed');
  if (typeof header.kid !== 'string') throw unauthorized('missing_kid');
  const claims = verifyRs256(token, await deps.fetchInstallKey(header.kid));

  checkTimes(claims, deps.nowSeconds());
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  const expectedAud = deps.config.relayBaseUrl;
  if (!audiences.some((aud) => typeof aud === 'string' && aud.replace(/\/+$/, '') === expectedAud)) {
    throw unauthorized('wrong_aud');
  }
  const clientKey = request.body.clientKey;
  if (typeof clientKey !== 'string' || !clientKey || claims.iss !== clientKey) throw unauthorized('iss_mismatch');
  if (typeof claims.qsh !== 'string') throw unauthorized('missing_qsh');
  if (!constantTimeEqual(claims.qsh, relayQsh(request.method, request.target, deps.config.relayBaseUrl))) {
    throw unauthorized('qsh_mismatch');
  }
  return clientKey;
}

function optionalString(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name];
  return typeof value === 'string' && value ? value : undefined;
}

/** `POST /lifecycle/installed`: verify, check the tenant's host, store (or replace) the tenant. */
export async function installTenant(request: LifecycleRequest, deps: LifecycleDeps): Promise<Tenant> {
  const clientKey = await verifyLifecycleRequest(request, deps);
  const { body } = request;
  const sharedSecret = optionalString(body, 'sharedSecret');
  const baseUrl = optionalString(body, 'baseUrl')?.replace(/\/+$/, '');
  if (!sharedSecret || sharedSecret.length < 32) throw badRequest('bad_install', 'The install payload has no usable sharedSecret.');
  if (!baseUrl) throw badRequest('bad_install', 'The install payload has no baseUrl.');
  if (!isAllowedUrl(baseUrl, deps.config.allowedTenantHosts, deps.config.allowHttpTenants)) {
    throw new AppError(403, 'tenant_not_allowed', 'This relay does not serve that site.', { reason: 'host_not_allowed' });
  }
  const tenant: Tenant = {
    tenantId: clientKey,
    sharedSecret,
    baseUrl,
    displayUrl: optionalString(body, 'displayUrl'),
    productType: optionalString(body, 'productType'),
    oauthClientId: optionalString(body, 'oauthClientId'),
    installationId: optionalString(body, 'installationId'),
    installedAt: new Date(deps.nowSeconds() * 1000).toISOString(),
  };
  await deps.tenants.put(tenant);
  return tenant;
}

/** `POST /lifecycle/uninstalled`: verify, then forget the tenant and everything held for it. */
export async function uninstallTenant(request: LifecycleRequest, deps: LifecycleDeps): Promise<string> {
  const clientKey = await verifyLifecycleRequest(request, deps);
  await deps.tenants.deleteWithEverything(clientKey);
  return clientKey;
}
