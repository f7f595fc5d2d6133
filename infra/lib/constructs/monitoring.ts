import { Aws, Duration, Fn, Stack } from 'aws-cdk-lib';
import type { IHttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import type { RelayFunction } from './relay-function';

/**
 * The relay's custom metrics (CloudWatch embedded metric format, written by
 * Powertools Metrics in the functions). Every metric carries the `service`
 * dimension (POWERTOOLS_SERVICE_NAME); `UploadFailed` is also emitted with
 * `service` + `code` (the contract's error code) and `AuthFailures` with
 * `service` + `kind`, which the dashboard breaks down.
 */
export const RELAY_METRICS = Object.freeze({
  uploadSucceeded: 'UploadSucceeded',
  uploadFailed: 'UploadFailed',
  bytesRelayed: 'BytesRelayed',
  uploadLatency: 'UploadLatency',
  confluenceLatency: 'ConfluenceLatency',
  ticketsIssued: 'TicketsIssued',
  authFailures: 'AuthFailures',
  stagedObjectsLeftBehind: 'StagedObjectsLeftBehind',
});

export interface MonitoringProps {
  /** The relay's HTTP API. */
  readonly api: IHttpApi;
  /** Every relay function; each gets errors, throttles and duration alarms. */
  readonly functions: readonly RelayFunction[];
  /** The relay's table. */
  readonly table: ITable;
  /**
   * Namespace of the custom metrics (the functions' POWERTOOLS_METRICS_NAMESPACE).
   * @default 'ConfluenceUploadRelay'
   */
  readonly metricsNamespace?: string;
  /**
   * `service` dimension of the custom metrics (the functions' POWERTOOLS_SERVICE_NAME).
   * @default 'upload-relay'
   */
  readonly serviceName?: string;
  /**
   * E-mail address subscribed to the alarm topic (the recipient must confirm).
   * @default - no subscription; subscribe to the topic yourself
   */
  readonly alarmEmail?: string;
  /**
   * API 5xx responses, as a percentage of requests over 5 minutes, that raise the alarm.
   * @default 5
   */
  readonly api5xxPercentThreshold?: number;
  /**
   * Failed uploads, as a percentage of uploads over 15 minutes, that raise the alarm.
   * @default 10
   */
  readonly uploadFailurePercentThreshold?: number;
}

/**
 * Alarms routed to one SNS topic (alarm and OK transitions) and a dashboard.
 * Each alarm's description says what it means and what to do; docs/deploy.md
 * repeats them.
 */
export class Monitoring extends Construct {
  readonly topic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];
  private readonly action: SnsAction;
  private readonly prefix: string;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const namespace = props.metricsNamespace ?? 'ConfluenceUploadRelay';
    const service = props.serviceName ?? 'upload-relay';
    this.prefix = Stack.of(this).stackName;

    // Not KMS-encrypted, deliberately: notifications carry only alarm names,
    // states and metric values; CloudWatch cannot publish to a topic under the
    // AWS-managed aws/sns key (its key policy cannot grant CloudWatch), and a
    // customer-managed key would add a monthly fee to every deployment. TLS is
    // enforced by the topic policy (cdk-nag AwsSolutions-SNS3).
    this.topic = new sns.Topic(this, 'AlarmTopic', {
      displayName: `${this.prefix} alarms`,
      enforceSSL: true,
    });
    // The topic policy replaces SNS's default one, so say explicitly that this
    // account's CloudWatch alarms may publish.
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsOfThisAccount',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
          ArnLike: { 'aws:SourceArn': `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:*` },
        },
      }),
    );
    if (props.alarmEmail) this.topic.addSubscription(new EmailSubscription(props.alarmEmail));
    this.action = new SnsAction(this.topic);

    // --- API --------------------------------------------------------------
    const fiveMinutes = Duration.minutes(5);
    const apiRequests = props.api.metricCount({ period: fiveMinutes, statistic: 'Sum' });
    const api5xx = props.api.metricServerError({ period: fiveMinutes, statistic: 'Sum' });
    const api4xx = props.api.metricClientError({ period: fiveMinutes, statistic: 'Sum' });
    const api5xxThreshold = props.api5xxPercentThreshold ?? 5;
    this.addAlarm('Api5xxRate', {
      alarmName: 'api-5xx-rate',
      alarmDescription:
        `More than ${api5xxThreshold}% of API requests answered 5xx over 5 minutes. The relay maps every failure it understands to a 4xx or a 502/503/504 from Confluence, so look at the access logs (integrationError, errorMessage) and the functions' logs for the failing route; a Confluence outage shows up as upstream_error/upstream_timeout.`,
      metric: new cloudwatch.MathExpression({
        expression: 'IF(requests > 0, 100 * FILL(errors, 0) / requests, 0)',
        usingMetrics: { requests: apiRequests, errors: api5xx },
        period: fiveMinutes,
        label: 'API 5xx %',
      }),
      threshold: api5xxThreshold,
    });

    // --- Functions ----------------------------------------------------------
    for (const relayFunction of props.functions) {
      const fn = relayFunction.function;
      const name = relayFunction.node.id;
      this.addAlarm(`${name}Errors`, {
        alarmName: `${name}-errors`,
        alarmDescription: `The ${name} function failed outright (crash, timeout or failed cold start — handled errors become HTTP responses and do not count). Open its log group, filter on level ERROR; a configuration error at cold start names the bad variable. Redeploy with a fixed value if so.`,
        metric: fn.metricErrors({ period: fiveMinutes, statistic: 'Sum' }),
        threshold: 0,
      });
      this.addAlarm(`${name}Throttles`, {
        alarmName: `${name}-throttles`,
        alarmDescription: `Lambda throttled the ${name} function: the account's concurrency limit in this region is used up, and callers get 5xx. Check concurrent executions across the account; ask for a higher limit or find the function that consumes it.`,
        metric: fn.metricThrottles({ period: fiveMinutes, statistic: 'Sum' }),
        threshold: 0,
      });
      const nearTimeoutMs = Math.round(relayFunction.timeout.toMilliseconds() * 0.8);
      this.addAlarm(`${name}DurationNearTimeout`, {
        alarmName: `${name}-duration-near-timeout`,
        alarmDescription: `p99 duration of the ${name} function is above 80% of its ${relayFunction.timeout.toSeconds()} s timeout, so invocations are about to be cut off (and API Gateway gives up on any request at 30 s). Check ConfluenceLatency on the dashboard (slow Confluence) and the function's memory (CPU); for the direct upload path, a lower directMaxBytes sends large files through the staged path.`,
        metric: fn.metricDuration({ period: fiveMinutes, statistic: 'p99' }),
        threshold: nearTimeoutMs,
      });
    }

    // --- Table --------------------------------------------------------------
    this.addAlarm('TableThrottles', {
      alarmName: 'table-throttles',
      alarmDescription:
        'DynamoDB throttled reads or writes on the relay table (on-demand tables throttle past account/partition limits or sudden 2x traffic jumps). The SDK retries, then the request fails. Check the table\'s ConsumedRead/WriteCapacity and the account\'s on-demand table quotas.',
      metric: new cloudwatch.MathExpression({
        expression: 'FILL(reads, 0) + FILL(writes, 0)',
        usingMetrics: {
          reads: props.table.metric('ReadThrottleEvents', { period: fiveMinutes, statistic: 'Sum' }),
          writes: props.table.metric('WriteThrottleEvents', { period: fiveMinutes, statistic: 'Sum' }),
        },
        period: fiveMinutes,
        label: 'Throttled requests',
      }),
      threshold: 0,
    });

    // --- Uploads (custom metrics) -------------------------------------------
    const relayMetric = (metricName: string, statistic: string, period: Duration = fiveMinutes, dimensionsMap: Record<string, string> = { service }) =>
      new cloudwatch.Metric({ namespace, metricName, dimensionsMap, statistic, period });
    const fifteenMinutes = Duration.minutes(15);
    const uploadThreshold = props.uploadFailurePercentThreshold ?? 10;
    this.addAlarm('UploadFailureRate', {
      alarmName: 'upload-failure-rate',
      alarmDescription:
        `More than ${uploadThreshold}% of uploads failed over 15 minutes. The dashboard's "Upload failures by code" says which: forbidden/not-found are user-side, upstream_error/upstream_timeout/rate_limited point at Confluence (check status.atlassian.com), file_too_large/exceeds_site_limit at limits. Filter the uploads and staged-relay functions' logs by code for the tenants affected.`,
      metric: new cloudwatch.MathExpression({
        expression: 'IF(FILL(ok, 0) + FILL(failed, 0) > 0, 100 * FILL(failed, 0) / (FILL(ok, 0) + FILL(failed, 0)), 0)',
        usingMetrics: {
          ok: relayMetric(RELAY_METRICS.uploadSucceeded, 'Sum', fifteenMinutes),
          failed: relayMetric(RELAY_METRICS.uploadFailed, 'Sum', fifteenMinutes),
        },
        period: fifteenMinutes,
        label: 'Upload failure %',
      }),
      threshold: uploadThreshold,
    });

    this.addAlarm('StagedObjectsLeftBehind', {
      alarmName: 'staged-objects-left-behind',
      alarmDescription:
        'The staging sweeper (runs every 15 minutes) found customer files in the staging bucket older than one hour. Staged files should live only until Confluence has them; the sweeper deletes what no ticket can complete any more, so a lasting alarm means deletion fails: check the staged-relay and staging-sweeper functions\' logs and errors, and the bucket for objects under staging/.',
      metric: relayMetric(RELAY_METRICS.stagedObjectsLeftBehind, 'Maximum', fifteenMinutes),
      threshold: 0,
    });

    // --- Dashboard ----------------------------------------------------------
    // One line per value of the dimension, labelled with that value.
    const searchBy = (metricName: string, dimension: string) =>
      new cloudwatch.MathExpression({
        expression: `SEARCH('{"${namespace}",service,${dimension}} MetricName="${metricName}" service="${service}"', 'Sum', 300)`,
        usingMetrics: {},
        label: `\${PROP('Dim.${dimension}')}`,
        period: fiveMinutes,
      });
    const percentiles = (metricName: string, label: string) => [
      relayMetric(metricName, 'p50').with({ label: `${label} p50` }),
      relayMetric(metricName, 'p95').with({ label: `${label} p95` }),
    ];

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      // Dashboards are global to the account: the region keeps two deployments apart.
      dashboardName: Fn.join('-', [this.prefix, Aws.REGION]),
      defaultInterval: Duration.hours(6),
    });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Uploads (per 5 min)',
        left: [
          relayMetric(RELAY_METRICS.uploadSucceeded, 'Sum').with({ label: 'Succeeded' }),
          relayMetric(RELAY_METRICS.uploadFailed, 'Sum').with({ label: 'Failed' }),
          relayMetric(RELAY_METRICS.ticketsIssued, 'Sum').with({ label: 'Tickets issued' }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Bytes relayed (per 5 min)',
        left: [relayMetric(RELAY_METRICS.bytesRelayed, 'Sum').with({ label: 'Bytes' })],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Upload failures by code',
        left: [searchBy(RELAY_METRICS.uploadFailed, 'code')],
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Upload latency (ms)',
        left: [...percentiles(RELAY_METRICS.uploadLatency, 'Upload'), ...percentiles(RELAY_METRICS.confluenceLatency, 'Confluence')],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'API latency (ms)',
        left: [
          props.api.metricLatency({ period: fiveMinutes, statistic: 'p50', label: 'Latency p50' }),
          props.api.metricLatency({ period: fiveMinutes, statistic: 'p95', label: 'Latency p95' }),
          props.api.metricIntegrationLatency({ period: fiveMinutes, statistic: 'p95', label: 'Integration p95' }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Auth failures by kind',
        left: [searchBy(RELAY_METRICS.authFailures, 'kind')],
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'API requests and errors (per 5 min)',
        left: [apiRequests.with({ label: 'Requests' })],
        right: [api4xx.with({ label: '4xx' }), api5xx.with({ label: '5xx' })],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Function errors and throttles',
        left: props.functions.flatMap((f) => [
          f.function.metricErrors({ period: fiveMinutes, statistic: 'Sum', label: `${f.node.id} errors` }),
          f.function.metricThrottles({ period: fiveMinutes, statistic: 'Sum', label: `${f.node.id} throttles` }),
        ]),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Function duration p99 (ms)',
        left: props.functions.map((f) => f.function.metricDuration({ period: fiveMinutes, statistic: 'p99', label: f.node.id })),
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 6 }),
    );
  }

  /** Creates an alarm (greater than threshold, missing data is fine) wired to the topic for ALARM and OK. */
  private addAlarm(
    id: string,
    options: { alarmName: string; alarmDescription: string; metric: cloudwatch.IMetric; threshold: number },
  ): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, id, {
      alarmName: `${this.prefix}-${options.alarmName}`,
      alarmDescription: options.alarmDescription,
      metric: options.metric,
      threshold: options.threshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm.addAlarmAction(this.action);
    alarm.addOkAction(this.action);
    this.alarms.push(alarm);
    return alarm;
  }
}
