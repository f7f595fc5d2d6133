import { httpHandler } from '../core/handler';
import { header, jsonBody, noContent, requestTarget } from '../core/http';
import { uninstallTenant } from '../connect/lifecycle';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** `POST /lifecycle/uninstalled`: forget the tenant and everything held for it. */
export const handler = httpHandler('lifecycle-uninstalled', async (event, log) => {
  log.tenant = await uninstallTenant(
    { method: 'POST', target: requestTarget(event), authorization: header(event, 'authorization'), body: jsonBody(event) },
    deps,
  );
  return noContent();
});
