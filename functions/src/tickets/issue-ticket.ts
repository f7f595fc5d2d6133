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

export interface TicketHttpRequest {
  method: string;
  target: string;
  authorization: string | undefined;
  body: () => Record<string, unknown>;
}

export interface IssueTicketDeps {
  config: Pick<RelayConfig, 'relayBaseUrl' | 'ticketTtlSeconds' | 'directMaxBytes'>;
  limits: UploadLimits;
  tenants: TenantStore;
  tickets: TicketStore;
  targetFor(tenant: Tenant): ConfluenceTarget;
  checkEditPermission(target: ConfluenceTarget, contentId: string, accountId: string): Promise<void>;
  nowSeconds: () => number;
  /** The staging bucket; without it, files over DIRECT_MAX_BYTES are refused. */
  staging?: StagingBucket;
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

/** `POST /tickets`: authenticate, validate, check the user may edit the page, then issue. */
export async function issueTicket(request: TicketHttpRequest, deps: IssueTicketDeps): Promise<IssuedTicket> {
  const { tenant, accountId } = await verifyContextToken(request, deps);
  const ticketRequest: TicketRequest = parseTicketRequest(request.body(), deps.limits);

  const tooBigForDirect = ticketRequest.files.some((file) => file.size > deps.config.directMaxBytes);
  if (tooBigForDirect && !deps.staging) {
    // Without a staging bucket only what fits in one Lambda request can be relayed.
    throw new AppError(413, 'file_too_large', `Files may be at most ${deps.config.directMaxBytes} bytes.`);
  }
  if (ticketRequest.files.some((file) => knownTooLarge(tenant, file.size, deps.nowSeconds()))) {
    throw new AppError(413, 'exceeds_site_limit', "A file is larger than this site's attachment limit.");
  }

  await deps.checkEditPermission(deps.targetFor(tenant), ticketRequest.contentId, accountId);

  const now = deps.nowSeconds();
  const expiresAt = now + deps.config.ticketTtlSeconds;
  const { ticket, ticketHash } = createTicketToken(tenant.tenantId);
  const files = ticketRequest.files.map((file) =>
    file.size > deps.config.directMaxBytes && deps.staging ? { ...file, stagingKey: deps.staging.newKey(tenant.tenantId, ticketHash) } : file,
  );
  await deps.tickets.put({
    tenantId: tenant.tenantId,
    ticketHash,
    accountId,
    contentId: ticketRequest.contentId,
    files,
    comment: ticketRequest.comment,
    minorEdit: ticketRequest.minorEdit,
    expiresAt,
  });
  const uploads = await Promise.all(
    files.map(async (file): Promise<UploadEntry> => {
      if (!file.stagingKey || !deps.staging) return { name: file.name, mode: 'direct', url: `${deps.config.relayBaseUrl}/uploads` };
      // The POST policy expires with the ticket: no upload can start after it.
      const post = await deps.staging.presignPost(file.stagingKey, file.size, file.type, expiresAt - deps.nowSeconds());
      return { name: file.name, mode: 'staged', post, completeUrl: `${deps.config.relayBaseUrl}/uploads/complete` };
    }),
  );
  return { ticket, expiresAt: new Date(expiresAt * 1000).toISOString(), tenantId: tenant.tenantId, uploads };
}
