import { httpHandler } from '../core/handler';
import { header, jsonBody, noContent, requestTarget } from '../core/http';
import { installTenant } from '../connect/lifecycle';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** `POST /lifecycle/installed` (signed install). */
export const handler = httpHandler('lifecycle-installed', async (event, log) => {
  const tenant = await installTenant(
    { method: 'POST', target: requestTarget(event), authorization: header(event, 'authorization'), body: jsonBody(event) },
    deps,
  );
  log.tenant = tenant.tenantId;
  return noContent();
});
