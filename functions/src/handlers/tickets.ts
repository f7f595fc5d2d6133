import { httpHandler } from '../core/handler';
import { header, json, jsonBody, requestTarget } from '../core/http';
import { checkEditPermission } from '../confluence/client';
import { issueTicket } from '../tickets/issue-ticket';
import { MetricName, MetricUnit, metrics } from '../core/metrics';
import { buildDeps } from '../deps';

const deps = buildDeps();
const forge =
  deps.config.forgeAppIds.length > 0 && deps.sealer
    ? { config: deps.config, resolveKey: deps.resolveForgeKey, sealer: deps.sealer, target: deps.forgeTarget }
    : undefined;

/** `POST /tickets`: a short-lived upload ticket for a Connect context token or a Forge Invocation Token. */
export const handler = httpHandler('tickets', async (event, log) => {
  const { tenantId, ...issued } = await issueTicket(
    {
      method: 'POST',
      target: requestTarget(event),
      authorization: header(event, 'authorization'),
      forgeUserToken: header(event, 'x-forge-oauth-user'),
      forgeSystemToken: header(event, 'x-forge-oauth-system'),
      body: () => jsonBody(event),
    },
    {
      ...deps,
      permissionAccessFor: (tenant, accountId) => deps.identityFor(tenant, accountId),
      checkEditPermission: (access, contentId, accountId) => checkEditPermission(access, contentId, accountId, deps.config.apiCallTimeoutMs),
      forge,
    },
  );
  log.tenant = tenantId;
  log.files = issued.uploads.length;
  metrics.addMetric(MetricName.TicketsIssued, MetricUnit.Count, 1);
  return json(201, issued);
});
