import type { RelayConfig } from '../core/config';
import { AppError, unauthorized } from '../core/errors';
import { checkTimes, constantTimeEqual, peekJwt, relayQsh, tokenFromAuthorization, verifyHs256, CONTEXT_QSH } from '../connect/jwt';
import type { ConfluenceTarget } from '../confluence/client';
import { knownTooLarge, type Tenant, type TenantStore } from '../store/tenant-store';
import type { TicketStore } from '../store/ticket-store';
import type { UploadLimits } from '../uploads/limits';
import { parseTicketRequest, type TicketRequest } from './ticket-request';
import { createTicketToken } from './ticket-token';
import type { StagedPost, StagingBucket } from '../staging/s3';
import { verifyForgeInvocation } from '../forge/invocation-token';
import type { ForgeKeyResolver } from '../forge/jwks';
import type { TokenSealer } from '../forge/token-sealer';

export interface TicketHttpRequest {
  method: string;
  target: string;
  authorization: string | undefined;
  /** Forge Remote: `x-forge-oauth-user` / `x-forge-oauth-system` (never logged). */
  forgeUserToken?: string;
  forgeSystemToken?: string;
  body: () => Record<string, unknown>;
}

export interface IssueTicketDeps {
  config: Pick<RelayConfig, 'relayBaseUrl' | 'ticketTtlSeconds' | 'directMaxBytes'>;
  limits: UploadLimits;
  tenants: TenantStore;
  tickets: TicketStore;
  /**
   * Where to ask Confluence whether the user may edit: as the user themself
   * when uploads act as the user (a self-check needs only the "Can use"
   * permission), else as the app (checking someone else needs the app's user
   * to be a Confluence administrator).
   */
  permissionAccessFor(tenant: Tenant, accountId: string): PermissionAccess;
  checkEditPermission(access: PermissionAccess, contentId: string, accountId: string): Promise<void>;
  nowSeconds: () => number;
  /** The staging bucket; without it, files over DIRECT_MAX_BYTES are refused. */
  staging?: StagingBucket;
  /** Forge Remote (absent: Forge tickets are refused). */
  forge?: {
    config: Pick<RelayConfig, 'forgeAppIds' | 'allowedForgeApiHosts' | 'allowHttpTenants'>;
    resolveKey: ForgeKeyResolver;
    sealer: TokenSealer;
    target(apiBaseUrl: string, token: string): ConfluenceTarget;
  };
}

/** Who asks Confluence about the user's rights (and how to renew a refused token). */
export interface PermissionAccess {
  target(): Promise<ConfluenceTarget>;
  renew?(): Promise<void>;
}

/** Who asks for a ticket, resolved from a Connect context JWT or a Forge Invocation Token. */
interface TicketPrincipal {
  tenantId: string;
  tenant?: Tenant;
  accountId: string;
  /** Where to check the user's edit right, when the relay must. */
  permissionAccess?: PermissionAccess;
  /** The page the FIT says the UI module runs on. */
  contextContentId?: string;
  forge?: { apiBaseUrl: string; installationId: string; tokenKind: 'user' | 'system'; token: string };
}

export type UploadEntry =
  | { name: string; mode: 'direct'; url: string }
  | { name: string; mode: 'staged'; post: StagedPost; completeUrl: string };

export interface IssuedTicket {
  ticket: string;
  expiresAt: string;
  tenantId: string;
  uploads: UploadEntry[];
}

/**
 * Verifies a Connect context token (atlassian.md §1.4): HS256 only, signed with
 * the secret of the tenant named by `iss`, not expired, `qsh` either the fixed
 * `context-qsh` or the real hash of this request, and a user (`sub`).
 */
export async function verifyContextToken(
  request: Pick<TicketHttpRequest, 'method' | 'target' | 'authorization'>,
  deps: Pick<IssueTicketDeps, 'config' | 'tenants' | 'nowSeconds'>,
): Promise<{ tenant: Tenant; accountId: string }> {
  const token = tokenFromAuthorization(request.authorization, 'JWT');
  const { header, payload } = peekJwt(token);
  if (header.alg !== 'HS256') throw unauthorized('algorithm_not_allowed');
  if (typeof payload.iss !== 'string' || !payload.iss) throw unauthorized('missing_iss');
  const tenant = await deps.tenants.get(payload.iss);
  if (!tenant) throw unauthorized('unknown_iss');
  const claims = verifyHs256(token, tenant.sharedSecret);
  checkTimes(claims, deps.nowSeconds());
  const qsh = claims.qsh;
  if (typeof qsh !== 'string') throw unauthorized('missing_qsh');
  if (qsh !== CONTEXT_QSH && !constantTimeEqual(qsh, relayQsh(request.method, request.target, deps.config.relayBaseUrl))) {
    throw unauthorized('qsh_mismatch');
  }
  if (typeof claims.sub !== 'string' || !claims.sub) throw unauthorized('missing_sub');
  return { tenant, accountId: claims.sub };
}

async function connectPrincipal(request: TicketHttpRequest, deps: IssueTicketDeps): Promise<TicketPrincipal> {
  const { tenant, accountId } = await verifyContextToken(request, deps);
  return { tenantId: tenant.tenantId, tenant, accountId, permissionAccess: deps.permissionAccessFor(tenant, accountId) };
}

/**
 * A Forge Remote caller (atlassian.md §8.2): the FIT names the installation
 * and Confluence's API base; the OAuth token in the headers is what the
 * uploads will use — the user's when Forge sent one (Confluence then applies
 * the user's rights), else the app's (and the relay checks the user's right
 * itself). A Connect-on-Forge installation resolves to its Connect tenant.
 */
async function forgePrincipal(request: TicketHttpRequest, deps: IssueTicketDeps): Promise<TicketPrincipal> {
  if (!deps.forge) throw unauthorized('forge_disabled');
  const fit = await verifyForgeInvocation(tokenFromAuthorization(request.authorization, 'Bearer'), {
    config: deps.forge.config,
    resolveKey: deps.forge.resolveKey,
    nowSeconds: deps.nowSeconds,
  });
  const tokenKind = request.forgeUserToken ? 'user' : request.forgeSystemToken ? 'system' : undefined;
  const token = request.forgeUserToken ?? request.forgeSystemToken;
  if (!tokenKind || !token) throw unauthorized('missing_forge_oauth_token');
  if (tokenKind === 'system' && !fit.accountId) {
    // Without a user there is nobody whose right to edit could be checked.
    throw new AppError(403, 'forbidden', 'Uploads as the app need the user the request comes from.');
  }
  const tenantId = (await deps.tenants.findByInstallation(fit.installationId)) ?? fit.installationId;
  const tenant = await deps.tenants.get(tenantId);
  const target = deps.forge.target(fit.apiBaseUrl, token);
  return {
    tenantId,
    tenant,
    accountId: fit.accountId ?? 'unknown-user',
    permissionAccess: tokenKind === 'system' ? { target: async () => target } : undefined,
    contextContentId: fit.contentId,
    forge: { apiBaseUrl: fit.apiBaseUrl, installationId: fit.installationId, tokenKind, token },
  };
}

/** `POST /tickets`: authenticate (Connect or Forge), validate, check the user may edit the page, then issue. */
export async function issueTicket(request: TicketHttpRequest, deps: IssueTicketDeps): Promise<IssuedTicket> {
  const forge = /^bearer\s/i.test(request.authorization ?? '');
  const principal = forge ? await forgePrincipal(request, deps) : await connectPrincipal(request, deps);
  const { tenant, accountId } = principal;
  const ticketRequest: TicketRequest = parseTicketRequest(request.body(), deps.limits);
  if (principal.contextContentId && principal.contextContentId !== ticketRequest.contentId) {
    throw new AppError(403, 'content_mismatch', 'The ticket may only be for the page the app runs on.');
  }

  const tooBigForDirect = ticketRequest.files.some((file) => file.size > deps.config.directMaxBytes);
  if (tooBigForDirect && !deps.staging) {
    // Without a staging bucket only what fits in one Lambda request can be relayed.
    throw new AppError(413, 'file_too_large', `Files may be at most ${deps.config.directMaxBytes} bytes.`);
  }
  if (tenant && ticketRequest.files.some((file) => knownTooLarge(tenant, file.size, deps.nowSeconds()))) {
    throw new AppError(413, 'exceeds_site_limit', "A file is larger than this site's attachment limit.");
  }

  if (principal.permissionAccess) await deps.checkEditPermission(principal.permissionAccess, ticketRequest.contentId, accountId);

  const now = deps.nowSeconds();
  const expiresAt = now + deps.config.ticketTtlSeconds;
  const staged = (file: { size: number }) => file.size > deps.config.directMaxBytes && deps.staging !== undefined;
  // A Connect ticket for direct uploads carries its terms, signed with a key
  // derived from the tenant's secret, so an instance that knows the tenant can
  // start relaying before the store has answered (verify-ticket.ts).
  const signWith =
    tenant && !principal.forge && !ticketRequest.files.some(staged)
      ? { sharedSecret: tenant.sharedSecret, terms: { accountId, contentId: ticketRequest.contentId, files: ticketRequest.files, comment: ticketRequest.comment, minorEdit: ticketRequest.minorEdit, expiresAt } }
      : undefined;
  const { ticket, ticketHash } = createTicketToken(principal.tenantId, signWith);
  const files = ticketRequest.files.map((file) => (staged(file) && deps.staging ? { ...file, stagingKey: deps.staging.newKey(principal.tenantId, ticketHash) } : file));
  const grant = principal.forge && deps.forge
    ? {
        apiBaseUrl: principal.forge.apiBaseUrl,
        installationId: principal.forge.installationId,
        tokenKind: principal.forge.tokenKind,
        // Held for the ticket's lifetime only, sealed with the deployment's key.
        sealedToken: await deps.forge.sealer.seal(principal.forge.token, ticketHash),
      }
    : undefined;
  await deps.tickets.put({
    tenantId: principal.tenantId,
    ticketHash,
    accountId,
    contentId: ticketRequest.contentId,
    files,
    comment: ticketRequest.comment,
    minorEdit: ticketRequest.minorEdit,
    expiresAt,
    forge: grant,
  });
  const uploads = await Promise.all(
    files.map(async (file): Promise<UploadEntry> => {
      if (!file.stagingKey || !deps.staging) return { name: file.name, mode: 'direct', url: `${deps.config.relayBaseUrl}/uploads` };
      // The POST policy expires with the ticket: no upload can start after it.
      const post = await deps.staging.presignPost(file.stagingKey, file.size, file.type, expiresAt - deps.nowSeconds());
      return { name: file.name, mode: 'staged', post, completeUrl: `${deps.config.relayBaseUrl}/uploads/complete` };
    }),
  );
  return { ticket, expiresAt: new Date(expiresAt * 1000).toISOString(), tenantId: principal.tenantId, uploads };
}
