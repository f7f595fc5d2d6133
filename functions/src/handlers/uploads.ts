import { httpHandler } from '../core/handler';
import { header, json } from '../core/http';
import { AppError } from '../core/errors';
import { MetricName, MetricUnit, countByDimension, metrics } from '../core/metrics';
import { uploadAttachment, type UploadOptions } from '../confluence/client';
import { relayDirectUpload } from '../uploads/direct-upload';
import { bodyStream } from '../uploads/multipart';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** Claims outlive any invocation: API Gateway gives up after 30 s. */
const LEASE_SECONDS = 120;

async function timedUpload(options: UploadOptions) {
  const started = Date.now();
  try {
    return await uploadAttachment(options);
  } finally {
    metrics.addMetric(MetricName.ConfluenceLatency, MetricUnit.Milliseconds, Date.now() - started);
  }
}

/** `POST /uploads`: the multipart body streamed into Confluence, file by file. */
export const handler = httpHandler('uploads', async (event, log) => {
  const started = Date.now();
  try {
    const outcome = await relayDirectUpload(
      {
        authorization: header(event, 'authorization'),
        contentType: header(event, 'content-type'),
        body: () => bodyStream(event.body, event.isBase64Encoded),
      },
      { ...deps, targetFor: deps.appTarget, upload: timedUpload, leaseSeconds: LEASE_SECONDS },
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
