import { createPublicKey } from 'node:crypto';
import fc from 'fast-check';
import { verifyContextToken } from '../../functions/src/tickets/issue-ticket';
import { verifyLifecycleRequest } from '../../functions/src/connect/lifecycle';
import { installKeyFetcher } from '../../functions/src/connect/install-keys';
import { relayQsh } from '../../functions/src/connect/jwt';
import { verifyForgeInvocation } from '../../functions/src/forge/invocation-token';
import { createTicketToken } from '../../functions/src/tickets/ticket-token';
import { checkTicketEarly, forgetKnownTenants, verifyTicket } from '../../functions/src/tickets/verify-ticket';
import type { Tenant, TenantStore } from '../../functions/src/store/tenant-store';
import type { TicketRecord, TicketStore } from '../../functions/src/store/ticket-store';
import { rsaKeyPair, signHs256, signRs256 } from '../helpers/jwt';
import { applyAll, jwtMutations, runs, sameSignedToken, ticketMutations } from './mutations';

/**
 * Mutated credentials are never accepted (in-process, against the
 * verification functions the handlers call): context JWTs, signed-install
 * JWTs, Forge invocation tokens and upload tickets, each changed by bit
 * flips, character swaps, truncation, segment reordering or borrowing,
 * claim edits without re-signing, and algorithm changes (with the signature
 * kept, dropped, or made with a public or guessed key). Every refusal must be
 * the bare 401.
 */
const NOW = 1_800_000_000;
const RELAY = 'https://relay.example.com';
const tenantA: Tenant = { tenantId: 'client-a', sharedSecret: 'a'.repeat(43), baseUrl: 'https://a.atlassian.net/wiki', installedAt: '' };
const tenantB: Tenant = { tenantId: 'client-b', sharedSecret: 'b'.repeat(43), baseUrl: 'https://b.atlassian.net/wiki', installedAt: '' };
const tenants: TenantStore = {
  get: async (id) => [tenantA, tenantB].find((t) => t.tenantId === id),
  put: async () => undefined,
  deleteWithEverything: async () => 0,
  recordSiteLimit: async () => undefined,
  findByInstallation: async () => undefined,
};
const installKey = rsaKeyPair();
const forgeKey = rsaKeyPair();

/** Each refusal is the contract's bare 401; anything else (an acceptance, a 500) fails the property. */
async function refused(verify: () => Promise<unknown>): Promise<boolean> {
  try {
    await verify();
    return false;
  } catch (error) {
    return (error as { status?: number; code?: string }).status === 401 && (error as { code?: string }).code === 'unauthorized';
  }
}

describe('context JWTs (POST /tickets)', () => {
  const claims = { iss: 'client-a', sub: 'user-1', iat: NOW - 10, exp: NOW + 600, qsh: 'context-qsh' };
  const valid = signHs256(claims, tenantA.sharedSecret);
  const others = [
    signHs256({ ...claims, sub: 'user-2' }, tenantA.sharedSecret),
    signHs256({ ...claims, iss: 'client-b' }, tenantB.sharedSecret),
    signHs256({ ...claims, qsh: relayQsh('POST', '/tickets', RELAY) }, tenantA.sharedSecret),
    installKey.publicKeyPem,
  ];
  const verify = (token: string) =>
    verifyContextToken({ method: 'POST', target: '/tickets', authorization: `JWT ${token}` }, { config: { relayBaseUrl: RELAY } as never, tenants, nowSeconds: () => NOW });

  it('accepts the unmutated token', async () => {
    await expect(verify(valid)).resolves.toMatchObject({ accountId: 'user-1' });
  });

  it('never accepts a mutation of a valid token', async () => {
    await fc.assert(
      fc.asyncProperty(jwtMutations, async (mutations) => {
        const mutated = applyAll(valid, mutations, others);
        fc.pre(mutated.trim() !== valid && !others.includes(mutated));
        return refused(() => verify(mutated));
      }),
      { numRuns: runs(400) },
    );
  });
});

describe('context JWT claims, correctly signed (the checks after the signature)', () => {
  const verify = (token: string) =>
    verifyContextToken({ method: 'POST', target: '/tickets', authorization: `JWT ${token}` }, { config: { relayBaseUrl: RELAY } as never, tenants, nowSeconds: () => NOW });
  const SKEW = 30;
  const time = fc.option(fc.integer({ min: -4000, max: 4000 }), { nil: undefined });

  it('accepts exactly the tokens whose exp, iat, nbf, iss, sub and qsh are acceptable', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          exp: time,
          iat: time,
          nbf: time,
          iss: fc.constantFrom('client-a', 'client-b', 'nobody', ''),
          sub: fc.constantFrom('user-1', '', undefined),
          qsh: fc.constantFrom('context-qsh', relayQsh('POST', '/tickets', RELAY), relayQsh('POST', '/uploads', RELAY), 'CONTEXT-QSH', undefined),
        }),
        fc.boolean(),
        async (claims, signWithOwnSecret) => {
          const payload: Record<string, unknown> = { ...claims };
          for (const name of ['exp', 'iat', 'nbf'] as const) if (claims[name] !== undefined) payload[name] = NOW + (claims[name] as number);
          const tenant = claims.iss === 'client-b' ? tenantB : tenantA;
          const token = signHs256(payload, signWithOwnSecret ? tenant.sharedSecret : 'x'.repeat(43));
          const acceptable =
            signWithOwnSecret &&
            (claims.iss === 'client-a' || claims.iss === 'client-b') &&
            claims.exp !== undefined && NOW < NOW + claims.exp + SKEW &&
            (claims.iat === undefined || claims.iat <= SKEW) &&
            (claims.nbf === undefined || claims.nbf <= SKEW) &&
            (claims.qsh === 'context-qsh' || claims.qsh === relayQsh('POST', '/tickets', RELAY)) &&
            claims.sub === 'user-1';
          if (acceptable) await expect(verify(token)).resolves.toMatchObject({ accountId: 'user-1' });
          else expect(await refused(() => verify(token))).toBe(true);
        },
      ),
      { numRuns: runs(400) },
    );
  });
});

describe('signed-install JWTs (POST /lifecycle/installed)', () => {
  const body = { clientKey: 'client-a', sharedSecret: 's'.repeat(40), baseUrl: 'https://a.atlassian.net/wiki' };
  const claims = { iss: 'client-a', aud: RELAY, iat: NOW - 5, exp: NOW + 180, qsh: relayQsh('POST', '/lifecycle/installed', RELAY) };
  const valid = signRs256(claims, installKey.privateKeyPem, { kid: 'kid-1' });
  const otherKey = rsaKeyPair();
  const others = [
    signRs256({ ...claims, iss: 'client-b' }, installKey.privateKeyPem, { kid: 'kid-1' }),
    signRs256({ ...claims, qsh: relayQsh('POST', '/lifecycle/uninstalled', RELAY) }, installKey.privateKeyPem, { kid: 'kid-1' }),
    signRs256(claims, otherKey.privateKeyPem, { kid: 'kid-1' }),
    installKey.publicKeyPem,
  ];
  const KEYS_URL = 'https://keys.example.com';
  const fetchedUrls: string[] = [];
  // The real key fetcher (kid validation, caching) over a fake CDN that knows one kid.
  const fetchInstallKey = installKeyFetcher(KEYS_URL, (async (url: string) => {
    fetchedUrls.push(url);
    return url === `${KEYS_URL}/kid-1` ? new Response(installKey.publicKeyPem) : new Response('no such key', { status: 404 });
  }) as typeof fetch);
  const verify = (token: string) =>
    verifyLifecycleRequest(
      { method: 'POST', target: '/lifecycle/installed', authorization: `JWT ${token}`, body },
      { config: { relayBaseUrl: RELAY, allowedTenantHosts: ['*.atlassian.net'], allowHttpTenants: false }, fetchInstallKey, tenants, nowSeconds: () => NOW },
    );

  it('accepts the unmutated token', async () => {
    await expect(verify(valid)).resolves.toBe('client-a');
  });

  it('never accepts a mutation of a valid token (other than re-encoding its very signature)', async () => {
    await fc.assert(
      fc.asyncProperty(jwtMutations, async (mutations) => {
        const mutated = applyAll(valid, mutations, others);
        // RS256 signatures are compared as bytes: a base64url text with other spare bits is the same signature.
        fc.pre(mutated.trim() !== valid && !others.includes(mutated) && !sameSignedToken(valid, mutated.trim()));
        return refused(() => verify(mutated));
      }),
      { numRuns: runs(300) },
    );
  });

  it('never fetches a key from outside {CONNECT_INSTALL_KEYS_URL}/<kid of [A-Za-z0-9._-]>', () => {
    expect(fetchedUrls.length).toBeGreaterThan(0);
    for (const url of fetchedUrls) expect(url).toMatch(/^https:\/\/keys\.example\.com\/[A-Za-z0-9._-]{1,128}$/);
  });
});

describe('Forge invocation tokens (POST /tickets, Bearer)', () => {
  const APP_ID = 'ari:cloud:ecosystem::app/0b1c2d3e-aaaa-bbbb-cccc-0123456789ab';
  const claims = {
    iss: 'forge/invocation-token',
    aud: APP_ID,
    iat: NOW - 2,
    nbf: NOW - 2,
    exp: NOW + 25,
    principal: 'user-1',
    app: { id: APP_ID, installationId: 'ari:cloud:ecosystem::installation/1', apiBaseUrl: 'https://api.atlassian.com/ex/confluence/cloud-1' },
    context: { cloudId: 'cloud-1' },
  };
  const valid = signRs256(claims, forgeKey.privateKeyPem, { kid: 'forge-kid' });
  const others = [
    signRs256({ ...claims, principal: 'user-2' }, forgeKey.privateKeyPem, { kid: 'forge-kid' }),
    signRs256(claims, installKey.privateKeyPem, { kid: 'forge-kid' }),
    forgeKey.publicKeyPem,
  ];
  const publicKey = createPublicKey(forgeKey.publicKeyPem);
  const verify = (token: string) =>
    verifyForgeInvocation(token, {
      config: { forgeAppIds: [APP_ID], allowedForgeApiHosts: ['api.atlassian.com'], allowHttpTenants: false },
      resolveKey: async (kid) => {
        if (kid !== 'forge-kid') throw Object.assign(new Error('unknown kid'), { status: 401, code: 'unauthorized' });
        return publicKey;
      },
      nowSeconds: () => NOW,
    });

  it('accepts the unmutated token', async () => {
    await expect(verify(valid)).resolves.toMatchObject({ accountId: 'user-1' });
  });

  it('never accepts a mutation of a valid token (other than re-encoding its very signature)', async () => {
    await fc.assert(
      fc.asyncProperty(jwtMutations, async (mutations) => {
        const mutated = applyAll(valid, mutations, others);
        fc.pre(mutated.trim() !== valid && !others.includes(mutated) && !sameSignedToken(valid, mutated.trim()));
        return refused(() => verify(mutated));
      }),
      { numRuns: runs(300) },
    );
  });
});

describe('upload tickets (POST /uploads, Bearer)', () => {
  const issuedA = createTicketToken('client-a');
  const issuedB = createTicketToken('client-b');
  const record = (tenantId: string, ticketHash: string): TicketRecord => ({
    tenantId,
    ticketHash,
    accountId: 'user-1',
    contentId: '1',
    files: [{ name: 'a.txt', size: 1, type: 'text/plain' }],
    minorEdit: true,
    expiresAt: NOW + 300,
  });
  const stored = new Map([
    [`client-a/${issuedA.ticketHash}`, record('client-a', issuedA.ticketHash)],
    [`client-b/${issuedB.ticketHash}`, record('client-b', issuedB.ticketHash)],
  ]);
  const tickets = {
    getWithTenant: async (tenantId: string, hash: string) => ({ ticket: stored.get(`${tenantId}/${hash}`), tenant: await tenants.get(tenantId) }),
  } as unknown as TicketStore;
  const verify = (ticket: string) => verifyTicket(`Bearer ${ticket}`, { tickets, nowSeconds: () => NOW });

  it('accepts the unmutated ticket', async () => {
    await expect(verify(issuedA.ticket)).resolves.toMatchObject({ tenantId: 'client-a' });
  });

  it('never accepts a mutation of a valid ticket', async () => {
    await fc.assert(
      fc.asyncProperty(ticketMutations, async (mutations) => {
        const mutated = applyAll(issuedA.ticket, mutations, [issuedB.ticket]);
        fc.pre(mutated.trim() !== issuedA.ticket && mutated.trim() !== issuedB.ticket);
        return refused(() => verify(mutated));
      }),
      { numRuns: runs(400) },
    );
  });
});

describe('signed upload tickets (rt2), checked early by an instance that knows the tenant', () => {
  const terms = { accountId: 'user-1', contentId: '1', files: [{ name: 'a.txt', size: 1, type: 'text/plain' }], minorEdit: true, expiresAt: NOW + 300 };
  const issuedA = createTicketToken('client-a', { terms, sharedSecret: tenantA.sharedSecret });
  const issuedB = createTicketToken('client-b', { terms, sharedSecret: tenantB.sharedSecret });
  const stored = new Map([
    [`client-a/${issuedA.ticketHash}`, { tenantId: 'client-a', ticketHash: issuedA.ticketHash, ...terms }],
    [`client-b/${issuedB.ticketHash}`, { tenantId: 'client-b', ticketHash: issuedB.ticketHash, ...terms }],
  ]);
  const tickets = {
    getWithTenant: async (tenantId: string, hash: string) => ({ ticket: stored.get(`${tenantId}/${hash}`), tenant: await tenants.get(tenantId) }),
  } as unknown as TicketStore;
  const deps = { tickets, nowSeconds: () => NOW };
  /** The ticket as the upload path checks it: the early result when one is given (then the store's), else the store's. */
  let startedEarly = false;
  const check = async (ticket: string) => {
    const checked = await checkTicketEarly(`Bearer ${ticket}`, deps);
    startedEarly = checked.confirmed !== undefined;
    return checked.confirmed ?? checked.verified;
  };

  beforeAll(async () => {
    forgetKnownTenants();
    // Both tenants' records have been read by this instance: signed tickets of either may start early.
    await verifyTicket(`Bearer ${issuedA.ticket}`, deps);
    await verifyTicket(`Bearer ${issuedB.ticket}`, deps);
  });

  it('starts the unmutated ticket early', async () => {
    await expect(check(issuedA.ticket)).resolves.toMatchObject({ tenantId: 'client-a' });
    expect(startedEarly).toBe(true);
  });

  it('never starts a mutation of a valid signed ticket early, and never accepts it', async () => {
    await fc.assert(
      fc.asyncProperty(ticketMutations, async (mutations) => {
        const mutated = applyAll(issuedA.ticket, mutations, [issuedB.ticket]);
        fc.pre(mutated.trim() !== issuedA.ticket && mutated.trim() !== issuedB.ticket);
        startedEarly = false;
        const refusedByAll = await refused(() => check(mutated));
        return refusedByAll && !startedEarly;
      }),
      { numRuns: runs(400) },
    );
  });
});
