import { verifyContextToken } from '../../functions/src/tickets/issue-ticket';
import { relayQsh } from '../../functions/src/connect/jwt';
import type { Tenant, TenantStore } from '../../functions/src/store/tenant-store';
import { rsaKeyPair, signHs256, signRs256, tamper, unsigned } from '../helpers/jwt';

const NOW = 1_800_000_000;
const RELAY = 'https://relay.example.com';
const tenantA: Tenant = { tenantId: 'client-a', sharedSecret: 'a'.repeat(40), baseUrl: 'https://a.atlassian.net/wiki', installedAt: '' };
const tenantB: Tenant = { tenantId: 'client-b', sharedSecret: 'b'.repeat(40), baseUrl: 'https://b.atlassian.net/wiki', installedAt: '' };
const tenants: TenantStore = {
  get: async (id) => [tenantA, tenantB].find((t) => t.tenantId === id),
  put: async () => undefined,
  deleteWithEverything: async () => 0,
  recordSiteLimit: async () => undefined,
  findByInstallation: async () => undefined,
};
const keys = rsaKeyPair();
const claims = { iss: 'client-a', sub: 'user-1', iat: NOW - 10, exp: NOW + 600, qsh: 'context-qsh' };

function verify(authorization: string | undefined) {
  return verifyContextToken(
    { method: 'POST', target: '/tickets', authorization },
    { config: { relayBaseUrl: RELAY } as never, tenants, nowSeconds: () => NOW },
  );
}

describe('context token verification', () => {
  it('accepts a context token (context-qsh) and names tenant and user', async () => {
    const result = await verify(`JWT ${signHs256(claims, tenantA.sharedSecret)}`);
    expect(result.tenant.tenantId).toBe('client-a');
    expect(result.accountId).toBe('user-1');
  });

  it('accepts a token whose qsh is the real hash of this request', async () => {
    const qsh = relayQsh('POST', '/tickets', RELAY);
    await expect(verify(`JWT ${signHs256({ ...claims, qsh }, tenantA.sharedSecret)}`)).resolves.toBeDefined();
  });

  const good = signHs256(claims, tenantA.sharedSecret);
  it.each<[string, string | undefined]>([
    ['no Authorization header', undefined],
    ['Bearer instead of JWT scheme', `Bearer ${good}`],
    ['alg: none', `JWT ${unsigned(claims)}`],
    ['alg: none with the good signature kept', `JWT ${unsigned(claims).slice(0, -1)}${good.split('.')[2]}`],
    ['RS256 where HS256 is expected', `JWT ${signRs256(claims, keys.privateKeyPem)}`],
    ['HS512 instead of HS256', `JWT ${signHs256(claims, tenantA.sharedSecret, { alg: 'HS512' })}`],
    ['expired', `JWT ${signHs256({ ...claims, exp: NOW - 120 }, tenantA.sharedSecret)}`],
    ['no exp', `JWT ${signHs256({ ...claims, exp: undefined }, tenantA.sharedSecret)}`],
    ['iat in the future', `JWT ${signHs256({ ...claims, iat: NOW + 3600 }, tenantA.sharedSecret)}`],
    ['unknown iss', `JWT ${signHs256({ ...claims, iss: 'nobody' }, tenantA.sharedSecret)}`],
    ['no iss', `JWT ${signHs256({ ...claims, iss: undefined }, tenantA.sharedSecret)}`],
    ['wrong qsh', `JWT ${signHs256({ ...claims, qsh: relayQsh('POST', '/uploads', RELAY) }, tenantA.sharedSecret)}`],
    ['no qsh', `JWT ${signHs256({ ...claims, qsh: undefined }, tenantA.sharedSecret)}`],
    ['no sub (anonymous)', `JWT ${signHs256({ ...claims, sub: undefined }, tenantA.sharedSecret)}`],
    ['tampered payload', `JWT ${tamper(good, { ...claims, sub: 'admin' })}`],
    ['truncated token', `JWT ${good.slice(0, good.length - 10)}`],
    ['two segments only', `JWT ${good.split('.').slice(0, 2).join('.')}`],
    ['garbage', 'JWT not-a-token'],
    ["another tenant's secret", `JWT ${signHs256(claims, tenantB.sharedSecret)}`],
    ['iss of tenant B signed with A', `JWT ${signHs256({ ...claims, iss: 'client-b' }, tenantA.sharedSecret)}`],
  ])('refuses %s with a bare 401', async (_name, authorization) => {
    await expect(verify(authorization)).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
  });
});
