import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { Context } from 'aws-lambda';
import { logger } from '../core/logger';
import { MetricName, MetricUnit, countByDimension, metrics } from '../core/metrics';
import type { StagedRelayJob } from '../staging/invoke';
import { runStagedRelay } from '../uploads/staged-upload';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** Time kept back to record the outcome and delete the object before the function's own timeout. */
const FINISH_MARGIN_MS = 10_000;

/**
 * The staged relay (invoked asynchronously by `/uploads/complete`, not an
 * HTTP route): S3 object → Confluence, then the object is deleted.
 */
export const handler = middy<StagedRelayJob, void, Error, Context>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics))
  .handler(async (job, context) => {
    const started = Date.now();
    const staging = deps.staging;
    if (!staging) throw new Error('STAGING_BUCKET is not set');
    const deadlineMs = started + context.getRemainingTimeInMillis() - FINISH_MARGIN_MS;
    let as: 'user' | 'app' | undefined;
    const outcome = await runStagedRelay(
      job,
      { ...deps, staging, relay: deps.fileRelay({ deadlineMs, onIdentity: (kind) => (as = kind) }) },
      context.awsRequestId,
    );
    if (outcome.duplicate) {
      logger.info('staged relay', { route: 'staged-relay', tenant: job.tenantId, code: 'duplicate_delivery', status: 200, bytes: 0 });
      return;
    }
    if (outcome.result) {
      metrics.addMetric(MetricName.UploadSucceeded, MetricUnit.Count, 1);
      metrics.addMetric(MetricName.BytesRelayed, MetricUnit.Bytes, outcome.bytes);
      metrics.addMetric(MetricName.UploadLatency, MetricUnit.Milliseconds, Date.now() - started);
    } else if (outcome.failure) {
      countByDimension(MetricName.UploadFailed, 'code', outcome.failure.code);
    }
    logger.info('staged relay', {
      route: 'staged-relay',
      tenant: job.tenantId,
      code: outcome.failure?.code ?? 'ok',
      status: outcome.failure?.status ?? 200,
      bytes: outcome.bytes,
      as,
      latencyMs: Date.now() - started,
    });
  });
