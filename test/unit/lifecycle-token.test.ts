import { verifyLifecycleRequest } from '../../functions/src/connect/lifecycle';
import { relayQsh } from '../../functions/src/connect/jwt';
import { rsaKeyPair, signHs256, signRs256, tamper, unsigned } from '../helpers/jwt';

const NOW = 1_800_000_000;
const RELAY = 'https://relay.example.com';
const installKey = rsaKeyPair();
const otherKey = rsaKeyPair();
const body = { clientKey: 'client-a', sharedSecret: 's'.repeat(40), baseUrl: 'https://a.atlassian.net/wiki' };
const claims = { iss: 'client-a', aud: RELAY, iat: NOW - 5, exp: NOW + 180, qsh: relayQsh('POST', '/lifecycle/installed', RELAY) };

function verify(authorization: string | undefined, requestBody: Record<string, unknown> = body) {
  return verifyLifecycleRequest(
    { method: 'POST', target: '/lifecycle/installed', authorization, body: requestBody },
    {
      config: { relayBaseUrl: RELAY, allowedTenantHosts: ['*.atlassian.net'], allowHttpTenants: false },
      fetchInstallKey: async (kid) => {
        if (kid !== 'kid-1') throw Object.assign(new Error('unknown kid'), { status: 401 });
        return installKey.publicKeyPem;
      },
      tenants: { get: async () => undefined, put: async () => undefined, deleteWithEverything: async () => 0, recordSiteLimit: async () => undefined, findByInstallation: async () => undefined },
      nowSeconds: () => NOW,
    },
  );
}

describe('signed-install verification', () => {
  it('accepts a correctly signed install', async () => {
    await expect(verify(`JWT ${signRs256(claims, installKey.privateKeyPem, { kid: 'kid-1' })}`)).resolves.toBe('client-a');
  });

  const good = signRs256(claims, installKey.privateKeyPem, { kid: 'kid-1' });
  it.each<[string, string | undefined]>([
    ['no Authorization', undefined],
    ['alg: none', `JWT ${unsigned(claims)}`],
    ['HS256 signed with the install public key', `JWT ${signHs256(claims, installKey.publicKeyPem, { kid: 'kid-1' })}`],
    ['symmetric (shared-secret) signed install', `JWT ${signHs256(claims, body.sharedSecret)}`],
    ['forged signature (other key)', `JWT ${signRs256(claims, otherKey.privateKeyPem, { kid: 'kid-1' })}`],
    ['no kid', `JWT ${signRs256(claims, installKey.privateKeyPem)}`],
    ['unknown kid', `JWT ${signRs256(claims, installKey.privateKeyPem, { kid: 'kid-2' })}`],
    ['wrong aud', `JWT ${signRs256({ ...claims, aud: 'https://evil.example.com' }, installKey.privateKeyPem, { kid: 'kid-1' })}`],
    ['iss differs from body clientKey', `JWT ${signRs256({ ...claims, iss: 'client-b' }, installKey.privateKeyPem, { kid: 'kid-1' })}`],
    ['qsh of another path', `JWT ${signRs256({ ...claims, qsh: relayQsh('POST', '/lifecycle/uninstalled', RELAY) }, installKey.privateKeyPem, { kid: 'kid-1' })}`],
    ['context-qsh', `JWT ${signRs256({ ...claims, qsh: 'context-qsh' }, installKey.privateKeyPem, { kid: 'kid-1' })}`],
    ['expired', `JWT ${signRs256({ ...claims, exp: NOW - 60 }, installKey.privateKeyPem, { kid: 'kid-1' })}`],
    ['tampered payload', `JWT ${tamper(good, { ...claims, aud: RELAY, iss: 'client-a', extra: 1 })}`],
    ['truncated', `JWT ${good.slice(0, -20)}`],
  ])('refuses %s with 401', async (_name, authorization) => {
    await expect(verify(authorization)).rejects.toMatchObject({ status: 401 });
  });

  it('refuses a body whose clientKey differs from the signed iss', async () => {
    await expect(verify(`JWT ${good}`, { ...body, clientKey: 'client-b' })).rejects.toMatchObject({ status: 401 });
  });
});
