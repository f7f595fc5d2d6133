import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { logger } from './logger';

/**
 * CloudWatch metrics in embedded metric format (one JSON blob in the function
 * output per invocation). The names are what the CDK alarms and dashboard read
 * (infra/lib/constructs/monitoring.ts).
 */
export const METRICS_NAMESPACE_DEFAULT = 'ConfluenceUploadRelay';

/**
 * Routes Powertools' own warnings into the structured log, minus the one it
 * prints on every invocation of a route that records no metric (descriptor,
 * health): an empty invocation is normal here.
 */
const metricsLogger = {
  debug: (...args: unknown[]) => logger.debug(String(args[0])),
  info: (...args: unknown[]) => logger.info(String(args[0])),
  error: (...args: unknown[]) => logger.error(String(args[0])),
  warn: (...args: unknown[]) => {
    const message = String(args[0]);
    if (!message.startsWith('No application metrics to publish')) logger.warn(message);
  },
};

export const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE_DEFAULT,
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'upload-relay',
  logger: metricsLogger,
});

export const MetricName = {
  UploadSucceeded: 'UploadSucceeded',
  UploadFailed: 'UploadFailed',
  BytesRelayed: 'BytesRelayed',
  UploadLatency: 'UploadLatency',
  ConfluenceLatency: 'ConfluenceLatency',
  TicketsIssued: 'TicketsIssued',
  AuthFailures: 'AuthFailures',
  StagedObjectsLeftBehind: 'StagedObjectsLeftBehind',
  StagedObjectsSwept: 'StagedObjectsSwept',
} as const;

export { MetricUnit };

/**
 * Counts a failure under the plain service dimension (for rates and alarms)
 * and once more under `{service, <dimension>}` (for "errors by code" graphs).
 */
export function countByDimension(name: string, dimension: string, value: string): void {
  metrics.addMetric(name, MetricUnit.Count, 1);
  const single = metrics.singleMetric();
  single.addDimension(dimension, value);
  single.addMetric(name, MetricUnit.Count, 1);
}
