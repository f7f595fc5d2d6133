import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { Context } from 'aws-lambda';
import { MetricName, countByDimension, metrics } from './metrics';
import { AppError } from './errors';
import { errorResponse, requestIdOf, type HttpEvent, type HttpResult } from './http';
import { describeError, logger } from './logger';

/** What a route handler may add to its access-log line. */
export interface RequestLog {
  tenant?: string;
  bytes?: number;
  files?: number;
  fileNames?: string[];
  /** Whose identity the upload used at Confluence. */
  as?: 'user' | 'app';
  /** How the upload's ticket was checked: before the first byte (`store`), or alongside it on its signed terms (`early`). */
  ticketCheck?: 'store' | 'early';
}

export type RouteFunction = (event: HttpEvent, log: RequestLog, context: Context) => Promise<HttpResult>;

/**
 * Wraps a route function as a Lambda handler (middy + Powertools): Lambda
 * context and cold start in every log line, the API Gateway request id as the
 * correlation id, one access-log line per request (route, status, outcome
 * code, tenant, bytes, latency; never headers or bodies), metrics flushed as
 * EMF, and the one error edge.
 */
export function httpHandler(route: string, fn: RouteFunction) {
  return middy<HttpEvent, HttpResult, Error, Context>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(logMetrics(metrics, { captureColdStartMetric: true }))
    .handler(async (event, context) => {
      const started = Date.now();
      const requestId = requestIdOf(event);
      if (requestId) logger.appendKeys({ correlation_id: requestId });
      const log: RequestLog = {};
      let result: HttpResult;
      let failure: AppError | undefined;
      try {
        result = await fn(event, log, context);
      } catch (error) {
        failure = error instanceof AppError ? error : undefined;
        result = errorResponse(error, requestId);
        if (!failure) logger.error('unhandled error', { route, error: describeError(error) });
      }
      const code = failure?.code ?? (result.statusCode >= 400 ? 'internal_error' : 'ok');
      if (result.statusCode === 401) countByDimension(MetricName.AuthFailures, 'kind', failure?.reason ?? 'unknown');
      logger.info('request', {
        route,
        status: result.statusCode,
        code,
        ...(failure?.reason ? { reason: failure.reason } : {}),
        ...(failure?.cause ? { cause: describeError(failure.cause) } : {}),
        ...log,
        latencyMs: Date.now() - started,
        // Given here too, not only as an appended key: the local runtime runs invocations side by side in one
        // process, where another invocation's reset would drop it.
        ...(requestId ? { correlation_id: requestId } : {}),
      });
      return result;
    });
}
