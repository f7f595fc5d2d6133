import { createHash, randomBytes } from 'node:crypto';
import { unauthorized } from '../core/errors';

/**
 * Tickets are opaque bearer strings `rt1.<tenant id, base64url>.<256 random bits>`.
 * The tenant part only routes the lookup to the tenant's partition; what
 * authenticates is the random part, whose SHA-256 (of the whole string) is the
 * only form the store ever sees, so a leaked table holds no usable ticket.
 */
const PREFIX = 'rt1';

export function createTicketToken(tenantId: string): { ticket: string; ticketHash: string } {
  const ticket = `${PREFIX}.${Buffer.from(tenantId, 'utf8').toString('base64url')}.${randomBytes(32).toString('base64url')}`;
  return { ticket, ticketHash: hashTicket(ticket) };
}

export function hashTicket(ticket: string): string {
  return createHash('sha256').update(ticket, 'utf8').digest('hex');
}

export function parseTicketToken(ticket: string): { tenantId: string; ticketHash: string } {
  const parts = ticket.split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX || !/^[A-Za-z0-9_-]{43}$/.test(parts[2]) || !/^[A-Za-z0-9_-]{1,512}$/.test(parts[1])) {
    throw unauthorized('malformed_ticket');
  }
  const tenantId = Buffer.from(parts[1], 'base64url').toString('utf8');
  if (!tenantId) throw unauthorized('malformed_ticket');
  return { tenantId, ticketHash: hashTicket(ticket) };
}
