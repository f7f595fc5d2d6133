import { createHash, createHmac, randomBytes } from 'node:crypto';
import { unauthorized } from '../core/errors';
import { constantTimeEqual } from '../connect/jwt';
import type { DeclaredFile, TicketRecord } from '../store/ticket-store';

/**
 * Tickets are opaque bearer strings `rt1.<tenant id, base64url>.<256 random bits>`.
 * The tenant part only routes the lookup to the tenant's partition; what
 * authenticates is the random part, whose SHA-256 (of the whole string) is the
 * only form the store ever sees, so a leaked table holds no usable ticket.
 *
 * A Connect ticket is `rt2.<tenant>.<random>.<terms>.<mac>`: the same, plus
 * its terms (what the stored record says: page, user, files, expiry) and an
 * HMAC-SHA256 over everything before it, keyed with a key derived from the
 * tenant's shared secret. An instance that already holds the tenant's record
 * can start relaying on those terms while the store confirms the ticket (see
 * verify-ticket.ts `checkTicketEarly`); the store stays the authority.
 */
const PREFIX = 'rt1';
const SIGNED_PREFIX = 'rt2';
/** Terms longer than this (many files with long names, a long comment) keep the ticket short instead: `rt1`. */
export const MAX_SIGNED_TERMS_BYTES = 1_536;
const TERMS_KEY_LABEL = 'confluence-upload-relay ticket terms v1';

/** What a signed ticket carries: the stored record without its keys and its Forge grant. */
export type TicketTerms = Pick<TicketRecord, 'accountId' | 'contentId' | 'files' | 'comment' | 'minorEdit' | 'expiresAt'>;

export interface ParsedTicket {
  tenantId: string;
  ticketHash: string;
  /** A signed ticket's terms and MAC, unverified. */
  signed?: { signedPart: string; terms: string; mac: string };
}

/** The key a tenant's ticket terms are signed with (never the shared secret itself). */
export function termsKey(sharedSecret: string): Buffer {
  return createHmac('sha256', sharedSecret).update(TERMS_KEY_LABEL, 'utf8').digest();
}

/** The terms in one fixed shape and key order, so that a record read back from the store serialises the same. */
export function termsOf(record: TicketTerms): TicketTerms {
  const file = ({ name, size, type, stagingKey }: DeclaredFile): DeclaredFile => (stagingKey === undefined ? { name, size, type } : { name, size, type, stagingKey });
  return {
    accountId: record.accountId,
    contentId: record.contentId,
    files: record.files.map(file),
    ...(record.comment === undefined ? {} : { comment: record.comment }),
    minorEdit: record.minorEdit,
    expiresAt: record.expiresAt,
  };
}

/** Whether two records say the same about the ticket (what a signed ticket carries). */
export function sameTerms(a: TicketTerms, b: TicketTerms): boolean {
  return JSON.stringify(termsOf(a)) === JSON.stringify(termsOf(b));
}

/**
 * A new ticket for `tenantId`; signed with `signWith` (the tenant's shared
 * secret) when its terms are given and short enough.
 */
export function createTicketToken(tenantId: string, signWith?: { terms: TicketTerms; sharedSecret: string }): { ticket: string; ticketHash: string } {
  const base = `${Buffer.from(tenantId, 'utf8').toString('base64url')}.${randomBytes(32).toString('base64url')}`;
  const terms = signWith ? Buffer.from(JSON.stringify(termsOf(signWith.terms)), 'utf8') : undefined;
  let ticket = `${PREFIX}.${base}`;
  if (signWith && terms && terms.length <= MAX_SIGNED_TERMS_BYTES) {
    const signedPart = `${SIGNED_PREFIX}.${base}.${terms.toString('base64url')}`;
    ticket = `${signedPart}.${mac(signedPart, termsKey(signWith.sharedSecret))}`;
  }
  return { ticket, ticketHash: hashTicket(ticket) };
}

export function hashTicket(ticket: string): string {
  return createHash('sha256').update(ticket, 'utf8').digest('hex');
}

function mac(signedPart: string, key: Buffer): string {
  return createHmac('sha256', key).update(signedPart, 'utf8').digest('base64url');
}

const B64URL = /^[A-Za-z0-9_-]+$/;

export function parseTicketToken(ticket: string): ParsedTicket {
  const parts = ticket.split('.');
  const signed = parts[0] === SIGNED_PREFIX && parts.length === 5;
  if (
    !(signed || (parts[0] === PREFIX && parts.length === 3)) ||
    !/^[A-Za-z0-9_-]{43}$/.test(parts[2]) ||
    !/^[A-Za-z0-9_-]{1,512}$/.test(parts[1]) ||
    (signed && (!B64URL.test(parts[3]) || parts[3].length > Math.ceil((MAX_SIGNED_TERMS_BYTES * 4) / 3) || !/^[A-Za-z0-9_-]{43}$/.test(parts[4])))
  ) {
    throw unauthorized('malformed_ticket');
  }
  const tenantId = Buffer.from(parts[1], 'base64url').toString('utf8');
  if (!tenantId) throw unauthorized('malformed_ticket');
  return {
    tenantId,
    ticketHash: hashTicket(ticket),
    signed: signed ? { signedPart: parts.slice(0, 4).join('.'), terms: parts[3], mac: parts[4] } : undefined,
  };
}

/**
 * A signed ticket's terms, if its MAC is right under `key` (compared as text,
 * in constant time) and they have the expected shape; otherwise undefined.
 */
export function readSignedTerms(signed: NonNullable<ParsedTicket['signed']>, key: Buffer): TicketTerms | undefined {
  if (!constantTimeEqual(mac(signed.signedPart, key), signed.mac)) return undefined;
  let terms: Partial<TicketTerms>;
  try {
    terms = JSON.parse(Buffer.from(signed.terms, 'base64url').toString('utf8')) as Partial<TicketTerms>;
  } catch {
    return undefined;
  }
  const wellFormed =
    typeof terms === 'object' &&
    terms !== null &&
    typeof terms.accountId === 'string' &&
    typeof terms.contentId === 'string' &&
    typeof terms.minorEdit === 'boolean' &&
    typeof terms.expiresAt === 'number' &&
    (terms.comment === undefined || typeof terms.comment === 'string') &&
    Array.isArray(terms.files) &&
    terms.files.every((file) => typeof file?.name === 'string' && typeof file.size === 'number' && typeof file.type === 'string');
  return wellFormed ? termsOf(terms as TicketTerms) : undefined;
}
