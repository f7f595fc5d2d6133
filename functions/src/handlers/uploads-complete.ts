import { httpHandler } from '../core/handler';
import { header, json, jsonBody } from '../core/http';
import { AppError } from '../core/errors';
import { invokeStagedRelay } from '../staging/invoke';
import { completeStagedUpload, failureError } from '../uploads/staged-upload';
import { API_GATEWAY_TIMEOUT_MS } from '../uploads/limits';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** The staged relay may run 15 minutes; its claim must outlive it. */
const LEASE_SECONDS = 16 * 60;
/** How long the request waits for the relay before answering 202 (API Gateway cuts at 30 s). */
const WAIT_MARGIN_MS = 3_000;

/** `POST /uploads/complete`: relay a file the browser put in the staging bucket. */
export const handler = httpHandler('uploads-complete', async (event, log, context) => {
  const staging = deps.staging;
  if (!staging) throw new AppError(404, 'staging_disabled', 'This relay has no staging bucket.');
  const started = Date.now();
  const receivedAt = event.requestContext?.timeEpoch ?? started;
  const waitUntilMs = Math.min(
    started + deps.config.completeWaitMs,
    receivedAt + API_GATEWAY_TIMEOUT_MS - WAIT_MARGIN_MS,
    started + context.getRemainingTimeInMillis() - WAIT_MARGIN_MS,
  );
  const { tenantId, answer, file } = await completeStagedUpload(
    { authorization: header(event, 'authorization'), body: jsonBody(event) },
    {
      ...deps,
      staging,
      relayBaseUrl: deps.config.relayBaseUrl,
      invoke: (job) => invokeStagedRelay(deps.config, job),
      leaseSeconds: LEASE_SECONDS,
      waitUntilMs,
    },
  );
  log.tenant = tenantId;
  log.bytes = file.size;
  if (answer.status === 'failed') throw failureError(answer.failure);
  return json(answer.status, answer.body);
});
