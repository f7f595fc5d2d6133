import { App, CfnResource, Token } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildHandlers } from '../../functions/src/local/build';
import cdkJson from '../../cdk.json';
import { ALL_HANDLERS, ROUTES, STAGED_RELAY_HANDLER, STAGING_SWEEPER_HANDLER } from '../../functions/src/routes';
import { MetricName } from '../../functions/src/core/metrics';
import { RELAY_METRICS } from '../../infra/lib/constructs/monitoring';
import { readRelayConfig } from '../../infra/lib/config';
import { ACCESS_LOG_FIELDS } from '../../infra/lib/constructs/relay-api';
import { RelayStack, STAGED_OBJECT_PREFIX } from '../../infra/lib/relay-stack';
import { PROJECT_ROOT } from '../../infra/lib/bundling';

/**
 * Template assertions on the stack as `cdk synth` builds it (cdk.json context,
 * real esbuild bundling), synthesized once for the file. Only CDK's generic
 * CloudFormation-schema validation (~8 s) is left to cdk-synth.test.ts, which
 * runs the real CLI with every cdk.json setting.
 */
const FAST_CONTEXT = { '@aws-cdk/core:validateAgainstDefaultRules': false };
type Resources = Record<string, { Type: string; Properties: any; DeletionPolicy?: string; Metadata?: any }>;

let app: App;
let stack: RelayStack;
let template: Template;
let resources: Resources;

const logicalId = (construct: { node: { defaultChild?: unknown } }): string =>
  stack.resolve((construct.node.defaultChild as CfnResource).logicalId);
const fnResource = (handler: string) => resources[logicalId(stack.functions[handler].function)];
const policyStatementsOf = (handler: string): any[] => {
  const roleId = logicalId(stack.functions[handler].role);
  return Object.values(resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && r.Properties.Roles.some((ref: any) => ref.Ref === roleId))
    .flatMap((r) => r.Properties.PolicyDocument.Statement);
};
const actionsOf = (statement: any): string[] => [statement.Action].flat();
/** API functions stop before API Gateway's 30 s; the staged relay runs asynchronously, up to Lambda's 15 minutes. */
const timeoutOf = (handler: string) => ({ [STAGED_RELAY_HANDLER]: 900, [STAGING_SWEEPER_HANDLER]: 300 })[handler] ?? 29;
const byType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);

beforeAll(() => {
  app = new App({ context: { ...cdkJson.context, ...FAST_CONTEXT } });
  stack = new RelayStack(app, 'RelayUnderTest', { config: readRelayConfig(app) });
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources;
}, 120_000);
afterAll(() => rmSync(app.outdir, { recursive: true, force: true }));

describe('functions', () => {
  test('one function per handler, nodejs22.x on arm64, house defaults', () => {
    expect(Object.keys(stack.functions).sort()).toEqual([...ALL_HANDLERS].sort());
    for (const handler of ALL_HANDLERS) {
      const { Properties } = fnResource(handler);
      expect(Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        MemorySize: 1024,
        Timeout: timeoutOf(handler),
        Handler: 'index.handler',
        LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: logicalId(stack.functions[handler].logGroup) } },
      });
      expect(Properties.TracingConfig).toBeUndefined();
      expect(Properties.Environment.Variables).toMatchObject({
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: 'RelayUnderTest',
        POWERTOOLS_METRICS_NAMESPACE: 'ConfluenceUploadRelay',
      });
    }
  });

  test('every function gets the relay configuration under the names functions/src/core/config.ts reads', () => {
    const apiId = logicalId(stack.api.api);
    for (const handler of ALL_HANDLERS) {
      expect(fnResource(handler).Properties.Environment.Variables).toMatchObject({
        RELAY_BASE_URL: { 'Fn::GetAtt': [apiId, 'ApiEndpoint'] },
        APP_KEY: 'confluence-upload-relay',
        APP_NAME: 'Upload relay',
        ALLOWED_TENANT_HOSTS: '*.atlassian.net',
        UPLOAD_AS: 'user',
        TICKET_TTL_SECONDS: '300',
        MAX_FILE_BYTES: '104857600',
        MAX_FILES_PER_TICKET: '20',
        DIRECT_MAX_BYTES: '4194304',
        ON_NAME_CONFLICT: 'version',
        FORGE_APP_IDS: '',
        ALLOWED_FORGE_API_HOSTS: 'api.atlassian.com',
        LOG_FILE_NAMES: 'false',
      });
    }
  });

  test('each function has its own log group with the configured retention', () => {
    for (const handler of ALL_HANDLERS) {
      const logGroup = resources[logicalId(stack.functions[handler].logGroup)];
      expect(logGroup.Type).toBe('AWS::Logs::LogGroup');
      expect(logGroup.Properties.RetentionInDays).toBe(30);
    }
  });

  test('roles carry no managed policy: only the own log group, plus what bind helpers grant', () => {
    for (const handler of ALL_HANDLERS) {
      const role = resources[logicalId(stack.functions[handler].role)];
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
      const logStatement = policyStatementsOf(handler).find((s) => actionsOf(s).includes('logs:PutLogEvents'));
      expect(logStatement).toEqual({
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Effect: 'Allow',
        Resource: { 'Fn::GetAtt': [logicalId(stack.functions[handler].logGroup), 'Arn'] },
      });
    }
  });

  const tableArn = () => ({ 'Fn::GetAtt': [logicalId(stack.node.findChild('Table').node.findChild('Table')), 'Arn'] });
  const READ_WRITE = ['dynamodb:BatchGetItem', 'dynamodb:BatchWriteItem', 'dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem'];
  test.each<[string, string[] | undefined]>([
    ['descriptor', undefined],
    ['editor', undefined],
    ['health', ['dynamodb:GetItem']],
    ['lifecycle-installed', READ_WRITE],
    ['lifecycle-uninstalled', READ_WRITE],
    ['tickets', READ_WRITE],
    ['uploads', READ_WRITE],
    ['uploads-complete', READ_WRITE],
    ['uploads-status', ['dynamodb:BatchGetItem', 'dynamodb:GetItem']],
    ['staged-relay', READ_WRITE],
  ])('%s: TABLE_NAME and the table grant come together (%j)', (handler, expectedActions) => {
    const env = fnResource(handler).Properties.Environment.Variables;
    const dynamoStatements = policyStatementsOf(handler).filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
    if (!expectedActions) {
      expect(env.TABLE_NAME).toBeUndefined();
      expect(dynamoStatements).toEqual([]);
      return;
    }
    expect(env.TABLE_NAME).toEqual({ Ref: tableArn()['Fn::GetAtt'][0] });
    expect(dynamoStatements).toHaveLength(1);
    expect(actionsOf(dynamoStatements[0]).sort()).toEqual(expectedActions);
    expect(dynamoStatements[0].Resource).toEqual(tableArn());
  });

  test.each<[string, string[] | undefined]>([
    ['descriptor', undefined],
    ['editor', undefined],
    ['health', undefined],
    ['lifecycle-installed', undefined],
    ['lifecycle-uninstalled', undefined],
    ['tickets', ['s3:PutObject']],
    ['uploads', undefined],
    ['uploads-complete', ['s3:DeleteObject', 's3:GetObject']],
    ['uploads-status', undefined],
    ['staged-relay', ['s3:DeleteObject', 's3:GetObject']],
  ])('%s: STAGING_BUCKET and object actions on staging/* only come together (%j)', (handler, expectedActions) => {
    const bucketId = logicalId(stack.node.findChild('Staging').node.findChild('Bucket'));
    const env = fnResource(handler).Properties.Environment.Variables;
    const s3Statements = policyStatementsOf(handler).filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')));
    if (!expectedActions) {
      expect(env.STAGING_BUCKET).toBeUndefined();
      expect(s3Statements).toEqual([]);
      return;
    }
    expect(env.STAGING_BUCKET).toEqual({ Ref: bucketId });
    expect(s3Statements).toHaveLength(1);
    expect(actionsOf(s3Statements[0]).sort()).toEqual(expectedActions);
    expect(s3Statements[0].Resource).toEqual({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, '/staging/*']] });
  });

  test('only uploads-complete may invoke the staged relay, named by STAGED_RELAY_FUNCTION, that function only', () => {
    const relayId = logicalId(stack.functions[STAGED_RELAY_HANDLER].function);
    for (const handler of ALL_HANDLERS) {
      const env = fnResource(handler).Properties.Environment.Variables;
      const invokes = policyStatementsOf(handler).filter((s) => actionsOf(s).some((a) => a.startsWith('lambda:')));
      if (handler === 'uploads-complete') {
        expect(env.STAGED_RELAY_FUNCTION).toEqual({ Ref: relayId });
        expect(invokes).toEqual([{ Action: 'lambda:InvokeFunction', Effect: 'Allow', Resource: { 'Fn::GetAtt': [relayId, 'Arn'] } }]);
      } else {
        expect(env.STAGED_RELAY_FUNCTION).toBeUndefined();
        expect(invokes).toEqual([]);
      }
    }
  });

  test('the staged relay may spend its whole invocation on one Confluence upload; API functions keep the 25 s default', () => {
    for (const handler of ALL_HANDLERS) {
      const env = fnResource(handler).Properties.Environment.Variables;
      expect(env.UPSTREAM_TIMEOUT_MS).toBe(handler === STAGED_RELAY_HANDLER ? '870000' : undefined);
    }
  });

  test('the staged relay is invoked asynchronously without automatic retries', () => {
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: logicalId(stack.functions[STAGED_RELAY_HANDLER].function) },
      MaximumRetryAttempts: 0,
      MaximumEventAgeInSeconds: 60,
    });
    template.resourceCountIs('AWS::Lambda::EventInvokeConfig', 1);
  });

  test('the bucket grant prefix is the one the functions put staged objects under', () => {
    const stagingModule = path.join(PROJECT_ROOT, 'functions', 'src', 'staging', 's3.ts');
    if (!existsSync(stagingModule)) return; // staged uploads not merged yet
    const { STAGING_PREFIX } = require(stagingModule) as { STAGING_PREFIX: string };
    expect(STAGED_OBJECT_PREFIX).toBe(STAGING_PREFIX);
  });

  test('bundles are built locally by esbuild: minified, external source maps, AWS SDK inside', () => {
    const oversized: Record<string, number> = {};
    for (const handler of ALL_HANDLERS) {
      // The code asset's S3 key is `<hash>.zip`; the bundle sits in `<outdir>/asset.<hash>/`.
      const assetHash = String(fnResource(handler).Properties.Code.S3Key).replace(/\.zip$/, '');
      const bundle = path.join(app.outdir, `asset.${assetHash}`, 'index.js');
      expect(existsSync(bundle)).toBe(true);
      expect(existsSync(`${bundle}.map`)).toBe(true);
      const code = readFileSync(bundle, 'utf8');
      // The SDK clients are inside the bundle (only the SDK's optional CRT signer stays a guarded require).
      expect(code).not.toMatch(/require\(["']@(aws-sdk\/(client|lib)-|smithy\/)/);
      // Minified: long lines (only licence comments break them).
      expect(code.length / code.split('\n').length).toBeGreaterThan(1000);
      // A gross-mistake guard only (inlined source map, a dependency bundled
      // twice); the 1 MB per-bundle target is measured by `npm run bench:coldstart`.
      if (code.length > 2 * 1024 * 1024) oversized[handler] = code.length;
    }
    expect(oversized).toEqual({});
  });
});

describe('staging sweeper', () => {
  test('runs every 15 minutes and may only list and delete under the staging prefix', () => {
    const fnRef = logicalId(stack.functions[STAGING_SWEEPER_HANDLER].function);
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(15 minutes)',
      Targets: Match.arrayWith([Match.objectLike({ Arn: { 'Fn::GetAtt': [fnRef, 'Arn'] } })]),
    });
    const role = stack.functions[STAGING_SWEEPER_HANDLER].function.role!;
    const policies = byType('AWS::IAM::Policy').filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(logicalId(role)));
    const statements = policies.flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
    expect(statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Action: 's3:ListBucket', Condition: { StringLike: { 's3:prefix': [`${STAGED_OBJECT_PREFIX}*`] } } }),
        expect.objectContaining({ Action: 's3:DeleteObject' }),
      ]),
    );
    expect(JSON.stringify(statements)).not.toMatch(/s3:GetObject|s3:PutObject|dynamodb:/);
  });

  test('alarms on staged objects older than an hour', () => {
    const alarm = byType('AWS::CloudWatch::Alarm').map(([, a]) => a.Properties).find((a) => String(a.AlarmName).endsWith('staged-objects-left-behind'));
    expect(alarm).toMatchObject({
      MetricName: 'StagedObjectsLeftBehind',
      Statistic: 'Maximum',
      Threshold: 0,
    });
  });

  test('the alarms read metrics the functions emit', () => {
    expect(Object.values(MetricName)).toEqual(expect.arrayContaining(Object.values(RELAY_METRICS)));
  });
});

describe('one code path', () => {
  test('npm run relay and the tests run byte-for-byte the bundles synthesis produces', async () => {
    const localDir = mkdtempSync(path.join(os.tmpdir(), 'local-bundles-'));
    try {
      const local = await buildHandlers(localDir);
      for (const handler of ALL_HANDLERS) {
        const assetHash = String(fnResource(handler).Properties.Code.S3Key).replace(/\.zip$/, '');
        const synthesized = readFileSync(path.join(app.outdir, `asset.${assetHash}`, 'index.js'));
        expect({ handler, same: readFileSync(local[handler]).equals(synthesized) }).toEqual({ handler, same: true });
      }
    } finally {
      rmSync(localDir, { recursive: true, force: true });
    }
  });
});

describe('HTTP API', () => {
  test('one route per contract path, each a payload-2.0 Lambda proxy to its handler', () => {
    template.resourceCountIs('AWS::ApiGatewayV2::Route', ROUTES.length);
    const integrations = Object.fromEntries(byType('AWS::ApiGatewayV2::Integration'));
    for (const route of ROUTES) {
      const [, routeResource] = byType('AWS::ApiGatewayV2::Route').find(
        ([, r]) => r.Properties.RouteKey === `${route.method} ${route.path}`,
      ) ?? [undefined, undefined];
      expect(routeResource).toBeDefined();
      const integrationId = routeResource!.Properties.Target['Fn::Join'][1][1].Ref;
      expect(integrations[integrationId].Properties).toMatchObject({
        IntegrationType: 'AWS_PROXY',
        PayloadFormatVersion: '2.0',
        IntegrationUri: { 'Fn::GetAtt': [logicalId(stack.functions[route.handler].function), 'Arn'] },
      });
    }
  });

  test('$default stage auto-deploys, throttled from config', () => {
    template.resourceCountIs('AWS::ApiGatewayV2::Stage', 1);
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
    });
  });

  test('access logs: JSON metadata to their own log group, no bodies, headers or authorization', () => {
    const [[, stage]] = byType('AWS::ApiGatewayV2::Stage');
    const settings = stage.Properties.AccessLogSettings;
    expect(settings.DestinationArn).toEqual({ 'Fn::GetAtt': [logicalId(stack.api.accessLogGroup), 'Arn'] });
    const format = JSON.parse(settings.Format);
    expect(format).toEqual(ACCESS_LOG_FIELDS);
    expect(Object.keys(format)).toEqual(
      expect.arrayContaining([
        'requestId', 'ip', 'requestTime', 'httpMethod', 'routeKey', 'status', 'protocol',
        'responseLength', 'integrationLatency', 'responseLatency', 'integrationError',
      ]),
    );
    expect(settings.Format).not.toMatch(/body|authorization|header|authorizer|querystring|cookie/i);
    expect(resources[logicalId(stack.api.accessLogGroup)].Properties.RetentionInDays).toBe(30);
  });

  test('no CORS configuration unless asked for', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'HTTP', CorsConfiguration: Match.absent() });
  });
});

describe('table', () => {
  test('pk/sk strings, on-demand, PITR, AWS-managed encryption, TTL on ttl, deletion protection, retained', () => {
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        SSESpecification: { SSEEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
        DeletionProtectionEnabled: true,
      },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });
});

describe('staging bucket', () => {
  const staging = () => resources[logicalId(stack.node.findChild('Staging').node.findChild('Bucket'))];
  const logBucketId = () => logicalId(stack.node.findChild('Staging').node.findChild('AccessLogs'));

  test('private: all public access blocked, ACLs disabled', () => {
    expect(staging().Properties).toMatchObject({
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    });
  });

  test('SSE-S3, no versioning', () => {
    expect(staging().Properties.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
    });
    expect(staging().Properties.VersioningConfiguration).toBeUndefined();
  });

  test('lifecycle: objects expire after 1 day, incomplete multipart uploads aborted after 1 day', () => {
    expect(staging().Properties.LifecycleConfiguration.Rules).toEqual([
      { Id: 'expire-staged-uploads', Status: 'Enabled', ExpirationInDays: 1, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } },
    ]);
  });

  test('CORS: POST/PUT only, only from the relay origin (the API endpoint), never *', () => {
    const rules = staging().Properties.CorsConfiguration.CorsRules;
    expect(rules).toHaveLength(1);
    expect(rules[0].AllowedMethods.sort()).toEqual(['POST', 'PUT']);
    expect(rules[0].AllowedOrigins).toEqual([{ 'Fn::GetAtt': [logicalId(stack.api.api), 'ApiEndpoint'] }]);
  });

  test('bucket policies deny any request without TLS (and below TLS 1.2)', () => {
    for (const bucketId of [logicalId(stack.node.findChild('Staging').node.findChild('Bucket')), logBucketId()]) {
      const [[, policy]] = byType('AWS::S3::BucketPolicy').filter(([, p]) => p.Properties.Bucket.Ref === bucketId);
      expect(policy.Properties.PolicyDocument.Statement).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Principal: { AWS: '*' }, Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } } }),
        ]),
      );
    }
  });

  test('server access logs go to a separate private log bucket that expires them and survives teardown', () => {
    expect(staging().Properties.LoggingConfiguration).toEqual({ DestinationBucketName: { Ref: logBucketId() }, LogFilePrefix: 'staging-bucket/' });
    const logBucket = resources[logBucketId()];
    expect(logBucket.DeletionPolicy).toBe('Retain');
    expect(logBucket.Properties).toMatchObject({
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LifecycleConfiguration: { Rules: [{ Id: 'expire-access-logs', Status: 'Enabled', ExpirationInDays: 90 }] },
    });
  });

  test('only the staging bucket is emptied and deleted on destroy', () => {
    expect(staging().DeletionPolicy).toBe('Delete');
    template.resourceCountIs('Custom::S3AutoDeleteObjects', 1);
    template.hasResourceProperties('Custom::S3AutoDeleteObjects', {
      BucketName: { Ref: logicalId(stack.node.findChild('Staging').node.findChild('Bucket')) },
    });
  });
});

describe('monitoring', () => {
  const topicId = () => byType('AWS::SNS::Topic')[0][0];
  const alarms = () => byType('AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
  const alarmNamed = (suffix: string) => {
    const alarm = alarms().find((a) => a.AlarmName === `RelayUnderTest-${suffix}`);
    expect(alarm).toBeDefined();
    return alarm!;
  };

  test('an SNS topic that only accepts TLS and lets this account\'s CloudWatch alarms publish; no e-mail by default', () => {
    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Allow', Action: 'sns:Publish', Principal: { Service: 'cloudwatch.amazonaws.com' } }),
        ]),
      },
    });
    template.resourceCountIs('AWS::SNS::Subscription', 0);
  });

  test('every alarm explains itself and notifies the topic on ALARM and OK', () => {
    expect(alarms()).toHaveLength(ALL_HANDLERS.length * 3 + 4);
    for (const alarm of alarms()) {
      expect(alarm.AlarmDescription.length).toBeGreaterThan(80);
      expect(alarm.AlarmActions).toEqual([{ Ref: topicId() }]);
      expect(alarm.OKActions).toEqual([{ Ref: topicId() }]);
      expect(alarm.TreatMissingData).toBe('notBreaching');
    }
  });

  test('API 5xx rate above 5% over 5 minutes (metric math on 5xx / Count)', () => {
    const alarm = alarmNamed('api-5xx-rate');
    expect(alarm).toMatchObject({ Threshold: 5, ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 1 });
    const expression = alarm.Metrics.find((m: any) => m.Expression);
    expect(expression.Expression).toBe('IF(requests > 0, 100 * FILL(errors, 0) / requests, 0)');
    const names = alarm.Metrics.filter((m: any) => m.MetricStat).map((m: any) => [m.Id, m.MetricStat.Metric.MetricName, m.MetricStat.Period]);
    expect(names.sort()).toEqual([['errors', '5xx', 300], ['requests', 'Count', 300]]);
  });

  test.each(ALL_HANDLERS.map((h) => [h]))('%s: errors, throttles and p99 duration near its timeout', (handler) => {
    const name = stack.functions[handler].node.id;
    const fnRef = { Ref: logicalId(stack.functions[handler].function) };
    expect(alarmNamed(`${name}-errors`)).toMatchObject({ MetricName: 'Errors', Statistic: 'Sum', Threshold: 0, Dimensions: [{ Name: 'FunctionName', Value: fnRef }] });
    expect(alarmNamed(`${name}-throttles`)).toMatchObject({ MetricName: 'Throttles', Statistic: 'Sum', Threshold: 0 });
    expect(alarmNamed(`${name}-duration-near-timeout`)).toMatchObject({
      MetricName: 'Duration',
      ExtendedStatistic: 'p99',
      Threshold: timeoutOf(handler) * 1000 * 0.8,
    });
  });

  test('DynamoDB read + write throttle events above 0', () => {
    const alarm = alarmNamed('table-throttles');
    expect(alarm.Metrics.find((m: any) => m.Expression).Expression).toBe('FILL(reads, 0) + FILL(writes, 0)');
    const metricNames = alarm.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric.MetricName);
    expect(metricNames.sort()).toEqual(['ReadThrottleEvents', 'WriteThrottleEvents']);
  });

  test('upload failure rate from the EMF metrics above 10% over 15 minutes', () => {
    const alarm = alarmNamed('upload-failure-rate');
    expect(alarm.Threshold).toBe(10);
    const stats = alarm.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat);
    expect(stats.map((s: any) => s.Metric.MetricName).sort()).toEqual(['UploadFailed', 'UploadSucceeded']);
    for (const stat of stats) {
      expect(stat).toMatchObject({ Period: 900, Stat: 'Sum', Metric: { Namespace: 'ConfluenceUploadRelay', Dimensions: [{ Name: 'service', Value: 'RelayUnderTest' }] } });
    }
  });

  test('dashboard: upload rate, bytes, latency percentiles, errors by code, alarm states', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const [[, dashboard]] = byType('AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const expected of ['UploadSucceeded', 'UploadFailed', 'BytesRelayed', 'TicketsIssued', 'UploadLatency', 'ConfluenceLatency', '"p50', '"p95', 'SEARCH(', 'code}', '"type\\":\\"alarm\\"']) {
      expect(body).toContain(expected);
    }
    // The alarm widget lists every alarm.
    for (const [id] of byType('AWS::CloudWatch::Alarm')) expect(body).toContain(id);
  });
});

describe('outputs', () => {
  test('API URL, descriptor URL, table and bucket names', () => {
    const apiEndpoint = { 'Fn::GetAtt': [logicalId(stack.api.api), 'ApiEndpoint'] };
    template.hasOutput('ApiUrl', { Value: apiEndpoint });
    template.hasOutput('DescriptorUrl', { Value: { 'Fn::Join': ['', [apiEndpoint, '/atlassian-connect.json']] } });
    template.hasOutput('TableName', { Value: { Ref: Match.stringLikeRegexp('^Table') } });
    template.hasOutput('StagingBucketName', { Value: { Ref: logicalId(stack.node.findChild('Staging').node.findChild('Bucket')) } });
  });
});

describe('variant: custom domain, e-mail, no deletion protection, tracing, -c string overrides', () => {
  let variant: RelayStack;
  let variantTemplate: Template;

  beforeAll(() => {
    const variantApp = new App({
      context: {
        ...cdkJson.context,
        ...FAST_CONTEXT,
        // Template assertions only: skip bundling (the main stack above bundles).
        'aws:cdk:bundling-stacks': [],
        customDomainName: 'relay.example.com',
        certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
        alarmEmail: 'ops@example.com',
        tableDeletionProtection: 'false',
        tracing: 'true',
        uploadAs: 'app',
        ticketTtlSeconds: '600',
        throttleRateLimit: '10',
        throttleBurstLimit: '20',
      },
    });
    variant = new RelayStack(variantApp, 'Variant', { config: readRelayConfig(variantApp) });
    variantTemplate = Template.fromStack(variant);
  }, 120_000);

  test('custom domain with the given certificate, TLS 1.2, mapped to the $default stage', () => {
    variantTemplate.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainName: 'relay.example.com',
      DomainNameConfigurations: [
        { CertificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0', EndpointType: 'REGIONAL', SecurityPolicy: 'TLS_1_2' },
      ],
    });
    variantTemplate.resourceCountIs('AWS::ApiGatewayV2::ApiMapping', 1);
    variantTemplate.hasOutput('CustomDomainTarget', {});
  });

  test('the custom domain is the relay base URL everywhere: functions, bucket CORS, outputs', () => {
    const configured = variantTemplate.findResources('AWS::Lambda::Function', {
      Properties: { Environment: { Variables: { RELAY_BASE_URL: 'https://relay.example.com', UPLOAD_AS: 'app', TICKET_TTL_SECONDS: '600' } } },
    });
    expect(Object.keys(configured)).toHaveLength(ALL_HANDLERS.length);
    variantTemplate.hasResourceProperties('AWS::S3::Bucket', {
      CorsConfiguration: { CorsRules: [Match.objectLike({ AllowedOrigins: ['https://relay.example.com'] })] },
    });
    variantTemplate.hasOutput('DescriptorUrl', { Value: 'https://relay.example.com/atlassian-connect.json' });
    variantTemplate.hasOutput('ApiUrl', { Value: 'https://relay.example.com' });
  });

  test('alarm e-mail subscribes to the topic', () => {
    variantTemplate.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
  });

  test('without deletion protection the table is deleted with the stack', () => {
    variantTemplate.hasResource('AWS::DynamoDB::Table', {
      Properties: Match.objectLike({ DeletionProtectionEnabled: false }),
      DeletionPolicy: 'Delete',
    });
  });

  test('tracing turns on active X-Ray for every relay function', () => {
    const traced = variantTemplate.findResources('AWS::Lambda::Function', { Properties: { TracingConfig: { Mode: 'Active' } } });
    expect(Object.keys(traced)).toHaveLength(ALL_HANDLERS.length);
  });

  test('stage throttling follows the overrides', () => {
    variantTemplate.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      DefaultRouteSettings: { ThrottlingRateLimit: 10, ThrottlingBurstLimit: 20 },
    });
  });
});

test('the stack is environment-agnostic (synthesizes without account or region)', () => {
  expect(Token.isUnresolved(stack.account)).toBe(true);
  expect(Token.isUnresolved(stack.region)).toBe(true);
});
