import { httpHandler } from '../core/handler';
import { header, json, jsonBody, requestTarget } from '../core/http';
import { checkEditPermission } from '../confluence/client';
import { issueTicket } from '../tickets/issue-ticket';
import { buildDeps } from '../deps';
import { MetricName, MetricUnit, metrics } from '../core/metrics';

const deps = buildDeps();

/** `POST /tickets`: a short-lived upload ticket for a Connect context token. */
export const handler = httpHandler('tickets', async (event, log) => {
  const { tenantId, ...issued } = await issueTicket(
    { method: 'POST', target: requestTarget(event), authorization: header(event, 'authorization'), body: () => jsonBody(event) },
    {
      ...deps,
      targetFor: deps.appTarget,
      checkEditPermission: (target, contentId, accountId) =>
        checkEditPermission(target, contentId, accountId, deps.config.apiCallTimeoutMs),
    },
  );
  log.tenant = tenantId;
  log.files = issued.uploads.length;
  metrics.addMetric(MetricName.TicketsIssued, MetricUnit.Count, 1);
  return json(201, issued);
});
