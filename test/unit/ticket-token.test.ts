import { createHash } from 'node:crypto';
import {
  MAX_SIGNED_TERMS_BYTES,
  createTicketToken,
  parseTicketToken,
  readSignedTerms,
  sameTerms,
  termsKey,
  type TicketTerms,
} from '../../functions/src/tickets/ticket-token';
import { checkTicketEarly, forgetKnownTenants, superseded, verifyTicket } from '../../functions/src/tickets/verify-ticket';
import type { Tenant } from '../../functions/src/store/tenant-store';
import { describeError } from '../../functions/src/core/logger';
import type { TicketRecord, TicketStore } from '../../functions/src/store/ticket-store';

const NOW = 1_800_000_000;
const tenant: Tenant = { tenantId: 'client-a', sharedSecret: 's'.repeat(43), baseUrl: 'https://a.atlassian.net/wiki', installedAt: '' };
const terms: TicketTerms = {
  accountId: 'user-1',
  contentId: '1001',
  files: [{ name: 'a "b".png', size: 2048, type: 'image/png' }],
  comment: 'café',
  minorEdit: true,
  expiresAt: NOW + 300,
};

/** A store holding the given tickets and tenants, counting its reads; `hold` keeps its answers back until released. */
function memoryStore(records: TicketRecord[], tenants: Tenant[]) {
  let reads = 0;
  let gate: Promise<void> = Promise.resolve();
  const store = {
    async getWithTenant(tenantId: string, ticketHash: string) {
      reads += 1;
      await gate;
      return {
        ticket: records.find((r) => r.tenantId === tenantId && r.ticketHash === ticketHash),
        tenant: tenants.find((t) => t.tenantId === tenantId),
      };
    },
  } as unknown as TicketStore;
  return {
    store,
    reads: () => reads,
    hold(): () => void {
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      return release;
    },
  };
}

function issued(tenantId = tenant.tenantId, t: TicketTerms = terms, secret = tenant.sharedSecret) {
  const { ticket, ticketHash } = createTicketToken(tenantId, { terms: t, sharedSecret: secret });
  return { ticket, record: { tenantId, ticketHash, ...t } as TicketRecord };
}

beforeEach(() => forgetKnownTenants());

describe('signed ticket tokens', () => {
  it('carry their terms after the random part, with an HMAC under a key derived from the tenant secret', () => {
    const { ticket } = createTicketToken('client-a', { terms, sharedSecret: tenant.sharedSecret });
    const parts = ticket.split('.');
    expect(parts).toHaveLength(5);
    expect(parts[0]).toBe('rt2');
    expect(Buffer.from(parts[1], 'base64url').toString()).toBe('client-a');
    expect(parts[2]).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const parsed = parseTicketToken(ticket);
    expect(parsed).toMatchObject({ tenantId: 'client-a', ticketHash: createHash('sha256').update(ticket).digest('hex') });
    expect(readSignedTerms(parsed.signed!, termsKey(tenant.sharedSecret))).toEqual(terms);
    // The key is not the secret itself.
    expect(termsKey(tenant.sharedSecret).equals(Buffer.from(tenant.sharedSecret))).toBe(false);
  });

  it('are refused under any other key, and after any change to what the MAC covers', () => {
    const { ticket } = createTicketToken('client-a', { terms, sharedSecret: tenant.sharedSecret });
    const parsed = parseTicketToken(ticket);
    expect(readSignedTerms(parsed.signed!, termsKey('another secret'))).toBeUndefined();
    const [prefix, tenantPart, random, payload, mac] = ticket.split('.');
    const otherTerms = Buffer.from(JSON.stringify({ ...terms, contentId: '666' })).toString('base64url');
    for (const changed of [
      [prefix, tenantPart, random, otherTerms, mac],
      [prefix, Buffer.from('client-b').toString('base64url'), random, payload, mac],
      [prefix, tenantPart, `${random.slice(0, -1)}${random.endsWith('A') ? 'B' : 'A'}`, payload, mac],
    ]) {
      expect(readSignedTerms(parseTicketToken(changed.join('.')).signed!, termsKey(tenant.sharedSecret))).toBeUndefined();
    }
    // The MAC is compared as text: the same bytes spelled with other spare bits do not pass.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const respelled = `${mac.slice(0, -1)}${alphabet[alphabet.indexOf(mac[42]) ^ 1]}`;
    expect(Buffer.from(respelled, 'base64url').equals(Buffer.from(mac, 'base64url'))).toBe(true);
    expect(readSignedTerms(parseTicketToken([prefix, tenantPart, random, payload, respelled].join('.')).signed!, termsKey(tenant.sharedSecret))).toBeUndefined();
  });

  it('stay unsigned (rt1) without terms, and when the terms are too long to carry', () => {
    expect(createTicketToken('client-a').ticket.split('.')[0]).toBe('rt1');
    const long = { ...terms, files: Array.from({ length: 20 }, (_, i) => ({ name: `${'n'.repeat(200)}-${i}.txt`, size: 1, type: 'text/plain' })) };
    expect(Buffer.byteLength(JSON.stringify(long))).toBeGreaterThan(MAX_SIGNED_TERMS_BYTES);
    const { ticket } = createTicketToken('client-a', { terms: long, sharedSecret: tenant.sharedSecret });
    expect(ticket.split('.')).toHaveLength(3);
    expect(parseTicketToken(ticket).signed).toBeUndefined();
  });

  it('refuse malformed shapes with the bare 401', () => {
    const { ticket } = createTicketToken('client-a', { terms, sharedSecret: tenant.sharedSecret });
    const [, tenantPart, random, payload, mac] = ticket.split('.');
    for (const bad of [
      ['rt1', tenantPart, random, payload, mac].join('.'),
      ['rt2', tenantPart, random, payload].join('.'),
      ['rt2', tenantPart, random, payload, mac, 'x'].join('.'),
      ['rt2', tenantPart, random, `${payload}=`, mac].join('.'),
      ['rt2', tenantPart, random, 'A'.repeat(2100), mac].join('.'),
      ['rt2', tenantPart, random, payload, mac.slice(1)].join('.'),
    ]) {
      expect(() => parseTicketToken(bad)).toThrow(expect.objectContaining({ status: 401 }));
    }
  });

  it('are blanked whole in error descriptions, as unsigned ones are', () => {
    const signed = createTicketToken('client-a', { terms, sharedSecret: tenant.sharedSecret }).ticket;
    const unsigned = createTicketToken('client-a').ticket;
    const described = describeError(new Error(`refused ${signed} and ${unsigned}.`));
    expect(described?.message).toBe('refused [ticket] and [ticket].');
  });

  it('compare terms regardless of the key order a store reads them back in', () => {
    const reordered = { expiresAt: terms.expiresAt, minorEdit: true, comment: 'café', files: [{ type: 'image/png', size: 2048, name: 'a "b".png' }], contentId: '1001', accountId: 'user-1' };
    expect(sameTerms(terms, reordered)).toBe(true);
    expect(sameTerms(terms, { ...reordered, files: [{ ...reordered.files[0], size: 2049 }] })).toBe(false);
    expect(sameTerms(terms, { ...terms, comment: undefined })).toBe(false);
  });
});

describe('checkTicketEarly', () => {
  it('goes to the store first for a tenant this instance has not read yet, then acts on signed terms at once', async () => {
    const first = issued();
    const second = issued();
    const { store, reads, hold } = memoryStore([first.record, second.record], [tenant]);
    const deps = { tickets: store, nowSeconds: () => NOW };

    const checkedFirst = await checkTicketEarly(`Bearer ${first.ticket}`, deps);
    expect(checkedFirst.confirmed).toBeUndefined();
    expect(checkedFirst.verified.ticket).toEqual(first.record);
    expect(reads()).toBe(1);

    // The store is held back: the check returns without its answer, and the answer follows.
    const release = hold();
    const checkedSecond = await checkTicketEarly(`Bearer ${second.ticket}`, deps);
    expect(checkedSecond.confirmed).toBeDefined();
    expect(checkedSecond.verified).toEqual({ ticket: second.record, tenant, tenantId: tenant.tenantId });
    // The store is asked a turn later, once the upload it confirms has started.
    expect(reads()).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(reads()).toBe(2);
    release();
    const confirmed = await checkedSecond.confirmed!;
    expect(superseded(checkedSecond.verified, confirmed)).toBe(false);
  });

  it('confirmed rejects with the store path\'s 401 when the store has no such ticket or no such tenant', async () => {
    const known = issued();
    const missing = issued();
    const { store } = memoryStore([known.record], [tenant]);
    const deps = { tickets: store, nowSeconds: () => NOW };
    await verifyTicket(`Bearer ${known.ticket}`, deps);
    const check = await checkTicketEarly(`Bearer ${missing.ticket}`, deps);
    await expect(check.confirmed).rejects.toMatchObject({ status: 401, reason: 'unknown_ticket' });

    const orphan = memoryStore([known.record], []);
    const checkOrphan = await checkTicketEarly(`Bearer ${known.ticket}`, { tickets: orphan.store, nowSeconds: () => NOW });
    await expect(checkOrphan.confirmed).rejects.toMatchObject({ status: 401, reason: 'tenant_gone' });
    // ...and the tenant is forgotten: the next ticket goes to the store first.
    await expect(checkTicketEarly(`Bearer ${known.ticket}`, { tickets: orphan.store, nowSeconds: () => NOW })).rejects.toMatchObject({ status: 401 });
  });

  it('goes to the store first for unsigned tickets, expired terms, and terms signed under another secret', async () => {
    const unsigned = createTicketToken(tenant.tenantId);
    const expired = issued(tenant.tenantId, { ...terms, expiresAt: NOW });
    const otherKey = issued(tenant.tenantId, terms, 'an old secret');
    const records = [{ tenantId: tenant.tenantId, ticketHash: unsigned.ticketHash, ...terms } as TicketRecord, expired.record, otherKey.record];
    const { store } = memoryStore(records, [tenant]);
    const deps = { tickets: store, nowSeconds: () => NOW };
    await verifyTicket(`Bearer ${unsigned.ticket}`, deps);
    expect((await checkTicketEarly(`Bearer ${unsigned.ticket}`, deps)).confirmed).toBeUndefined();
    await expect(checkTicketEarly(`Bearer ${expired.ticket}`, deps)).rejects.toMatchObject({ status: 401, reason: 'ticket_expired' });
    expect((await checkTicketEarly(`Bearer ${otherKey.ticket}`, deps)).confirmed).toBeUndefined();
  });

  it('superseded: a changed secret, site or terms in the store means the work is redone on the store\'s records', () => {
    const { record } = issued();
    const early = { ticket: record, tenant, tenantId: tenant.tenantId };
    expect(superseded(early, early)).toBe(false);
    expect(superseded(early, { ...early, tenant: { ...tenant, siteLimit: { refusedBytes: 10, refusedAt: NOW } } as Tenant })).toBe(false);
    expect(superseded(early, { ...early, tenant: { ...tenant, sharedSecret: 'new' } })).toBe(true);
    expect(superseded(early, { ...early, tenant: { ...tenant, baseUrl: 'https://b.atlassian.net/wiki' } })).toBe(true);
    expect(superseded(early, { ...early, ticket: { ...record, contentId: '2' } })).toBe(true);
  });
});
