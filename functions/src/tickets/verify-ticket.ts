import { unauthorized } from '../core/errors';
import { tokenFromAuthorization } from '../connect/jwt';
import type { Tenant } from '../store/tenant-store';
import type { TicketRecord, TicketStore } from '../store/ticket-store';
import { parseTicketToken } from './ticket-token';

export interface VerifiedTicket {
  ticket: TicketRecord;
  /** The Connect tenant; absent for a Forge ticket of an app never installed through Connect. */
  tenant?: Tenant;
  tenantId: string;
}

/**
 * Resolves `Authorization: Bearer <ticket>` to its record and tenant. Unknown,
 * expired or orphaned tickets (tenant uninstalled) are all the same 401.
 */
export async function verifyTicket(
  authorization: string | undefined,
  deps: { tickets: TicketStore; nowSeconds: () => number },
): Promise<VerifiedTicket> {
  const { tenantId, ticketHash } = parseTicketToken(tokenFromAuthorization(authorization, 'Bearer'));
  // Both records depend only on the ticket string: one round trip reads them.
  const { ticket, tenant } = await deps.tickets.getWithTenant(tenantId, ticketHash);
  if (!ticket) throw unauthorized('unknown_ticket');
  if (deps.nowSeconds() >= ticket.expiresAt) throw unauthorized('ticket_expired');
  // A Connect ticket dies with its tenant (uninstall); a Forge ticket carries its own grant.
  if (!tenant && !ticket.forge) throw unauthorized('tenant_gone');
  return { ticket, tenant, tenantId };
}
