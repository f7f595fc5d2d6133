import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { Context } from 'aws-lambda';
import { logger } from '../core/logger';
import { MetricName, MetricUnit, metrics } from '../core/metrics';
import { maxStagedAgeMs, sweepStaging } from '../staging/sweep';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** Runs on a schedule (every 15 minutes): deletes staged objects no ticket can complete, reports leftovers. */
export const handler = middy<unknown, void, Error, Context>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics))
  .handler(async () => {
    if (!deps.staging) throw new Error('STAGING_BUCKET is not set');
    const outcome = await sweepStaging(deps.staging, { nowMs: Date.now(), maxAgeMs: maxStagedAgeMs(deps.config.ticketTtlSeconds) });
    metrics.addMetric(MetricName.StagedObjectsLeftBehind, MetricUnit.Count, outcome.leftBehind);
    metrics.addMetric(MetricName.StagedObjectsSwept, MetricUnit.Count, outcome.deleted);
    logger.info('staging sweep', { route: 'staging-sweeper', ...outcome });
  });
