import { httpHandler } from '../core/handler';
import { header, json } from '../core/http';
import { AppError } from '../core/errors';
import { MetricName, MetricUnit, countByDimension, metrics } from '../core/metrics';
import { relayDirectUpload } from '../uploads/direct-upload';
import { bodyStream } from '../uploads/multipart';
import { API_GATEWAY_TIMEOUT_MS } from '../uploads/limits';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** Claims outlive any invocation: API Gateway gives up after 30 s. */
const LEASE_SECONDS = 120;
/** Time kept back to write the ledger and answer before API Gateway's cut-off. */
const ANSWER_MARGIN_MS = 1_500;

/** `POST /uploads`: the multipart body streamed into Confluence, file by file. */
export const handler = httpHandler('uploads', async (event, log, context) => {
  const started = Date.now();
  // API Gateway's 30 s run from when it received the request; Lambda may allow less.
  const receivedAt = event.requestContext?.timeEpoch ?? started;
  const deadlineMs = Math.min(receivedAt + API_GATEWAY_TIMEOUT_MS, started + context.getRemainingTimeInMillis()) - ANSWER_MARGIN_MS;
  try {
    const outcome = await relayDirectUpload(
      {
        authorization: header(event, 'authorization'),
        contentType: header(event, 'content-type'),
        body: () => bodyStream(event.body, event.isBase64Encoded),
      },
      {
        ...deps,
        leaseSeconds: LEASE_SECONDS,
        relay: deps.fileRelay({ deadlineMs, onIdentity: (kind) => (log.as = kind) }),
        onTicketCheck: (kind) => (log.ticketCheck = kind),
      },
    );
    log.tenant = outcome.tenantId;
    log.bytes = outcome.bytesRelayed;
    log.files = outcome.attachments.length;
    if (deps.config.logFileNames) log.fileNames = outcome.attachments.map((a) => a.name);
    metrics.addMetric(MetricName.UploadSucceeded, MetricUnit.Count, outcome.attachments.length);
    metrics.addMetric(MetricName.BytesRelayed, MetricUnit.Bytes, outcome.bytesRelayed);
    metrics.addMetric(MetricName.UploadLatency, MetricUnit.Milliseconds, Date.now() - started);
    return json(200, { attachments: outcome.attachments });
  } catch (error) {
    countByDimension(MetricName.UploadFailed, 'code', error instanceof AppError ? error.code : 'internal_error');
    throw error;
  }
});
