import { unauthorized } from '../core/errors';
import { tokenFromAuthorization } from '../connect/jwt';
import type { Tenant } from '../store/tenant-store';
import type { TicketRecord, TicketStore } from '../store/ticket-store';
import { parseTicketToken, readSignedTerms, sameTerms, termsKey } from './ticket-token';

export interface VerifiedTicket {
  ticket: TicketRecord;
  /** The Connect tenant; absent for a Forge ticket of an app never installed through Connect. */
  tenant?: Tenant;
  tenantId: string;
}

type TicketDeps = { tickets: TicketStore; nowSeconds: () => number };

/**
 * Resolves `Authorization: Bearer <ticket>` to its record and tenant. Unknown,
 * expired or orphaned tickets (tenant uninstalled) are all the same 401.
 */
export async function verifyTicket(authorization: string | undefined, deps: TicketDeps): Promise<VerifiedTicket> {
  const { tenantId, ticketHash } = parseTicketToken(tokenFromAuthorization(authorization, 'Bearer'));
  return fromStore(tenantId, ticketHash, deps);
}

/**
 * The install records this instance read last, per tenant, with their
 * ticket-terms keys: what lets a signed ticket be acted on before the store
 * has answered. Refreshed by every store read; bounded.
 */
const knownTenants = new Map<string, { tenant: Tenant; key: Buffer }>();
const MAX_KNOWN_TENANTS = 256;

function remember(tenantId: string, tenant: Tenant | undefined): void {
  const known = knownTenants.get(tenantId);
  knownTenants.delete(tenantId);
  if (!tenant) return;
  if (knownTenants.size >= MAX_KNOWN_TENANTS) knownTenants.delete(knownTenants.keys().next().value!);
  const key = known && known.tenant.sharedSecret === tenant.sharedSecret ? known.key : termsKey(tenant.sharedSecret);
  knownTenants.set(tenantId, { tenant, key });
}

/** Forgets every remembered tenant (tests). */
export function forgetKnownTenants(): void {
  knownTenants.clear();
}

async function fromStore(tenantId: string, ticketHash: string, deps: TicketDeps): Promise<VerifiedTicket> {
  // Both records depend only on the ticket string: one round trip reads them.
  const { ticket, tenant } = await deps.tickets.getWithTenant(tenantId, ticketHash);
  remember(tenantId, tenant);
  if (!ticket) throw unauthorized('unknown_ticket');
  if (deps.nowSeconds() >= ticket.expiresAt) throw unauthorized('ticket_expired');
  // A Connect ticket dies with its tenant (uninstall); a Forge ticket carries its own grant.
  if (!tenant && !ticket.forge) throw unauthorized('tenant_gone');
  return { ticket, tenant, tenantId };
}

export interface TicketCheck {
  /** The ticket and tenant to act on: from the store, or (with `confirmed`) from the ticket's signed terms. */
  verified: VerifiedTicket;
  /**
   * Present when `verified` was taken from a signed ticket and the tenant's
   * record this instance already held: the store's answer, read meanwhile.
   * It rejects with the 401 the store path gives; nothing may be completed
   * before it has settled, and if `superseded` by it, the work must be redone
   * with its records.
   */
  confirmed?: Promise<VerifiedTicket>;
}

/**
 * Like `verifyTicket`, but without waiting for the store when it need not: a
 * signed ticket whose MAC checks out under the key of a tenant record read
 * earlier by this instance, and whose terms have not expired, is returned at
 * once, with the store read running alongside as `confirmed`. Any other
 * ticket goes to the store first.
 */
export async function checkTicketEarly(authorization: string | undefined, deps: TicketDeps): Promise<TicketCheck> {
  const { tenantId, ticketHash, signed } = parseTicketToken(tokenFromAuthorization(authorization, 'Bearer'));
  const known = signed ? knownTenants.get(tenantId) : undefined;
  const terms = signed && known ? readSignedTerms(signed, known.key) : undefined;
  if (!known || !terms || deps.nowSeconds() >= terms.expiresAt) return { verified: await fromStore(tenantId, ticketHash, deps) };
  // Asked a moment later (the next turn of the event loop), once the work it
  // confirms has its first bytes on the wire.
  const confirmed = new Promise((resolve) => setImmediate(resolve)).then(() => fromStore(tenantId, ticketHash, deps));
  confirmed.catch(() => undefined);
  return { verified: { ticket: { tenantId, ticketHash, ...terms }, tenant: known.tenant, tenantId }, confirmed };
}

/**
 * Whether the store's records differ from what early work used, in anything
 * the upload depends on: the ticket's terms, or the tenant's site and
 * credentials (a reinstall changes the shared secret).
 */
export function superseded(early: VerifiedTicket, confirmed: VerifiedTicket): boolean {
  const a = early.tenant;
  const b = confirmed.tenant;
  if (!a || !b || confirmed.ticket.forge) return true;
  const sameTenant =
    a.tenantId === b.tenantId &&
    a.sharedSecret === b.sharedSecret &&
    a.baseUrl === b.baseUrl &&
    a.oauthClientId === b.oauthClientId &&
    a.installationId === b.installationId;
  return !sameTenant || !sameTerms(early.ticket, confirmed.ticket);
}
