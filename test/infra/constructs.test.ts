import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { rmSync } from 'node:fs';
import { RelayFunction } from '../../infra/lib/constructs/relay-function';
import { RelayApi } from '../../infra/lib/constructs/relay-api';
import { StagingBucket } from '../../infra/lib/constructs/staging-bucket';

/** Construct-level guarantees, on throwaway stacks without bundling. */
const apps: App[] = [];
function emptyStack(): Stack {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  apps.push(app);
  return new Stack(app, 'Constructs');
}
afterAll(() => apps.forEach((app) => rmSync(app.outdir, { recursive: true, force: true })));
const table = (stack: Stack, id: string) =>
  new dynamodb.Table(stack, id, { partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING } });

describe('RelayFunction bind helpers', () => {
  test('binding a second, different table to one function throws instead of silently re-pointing TABLE_NAME', () => {
    const stack = emptyStack();
    const fn = new RelayFunction(stack, 'Health', { handler: 'health' });
    fn.bindTable(table(stack, 'A'), 'read');
    expect(() => fn.bindTable(table(stack, 'B'), 'read')).toThrow(/TABLE_NAME is already set/);
  });

  test('bindBucket without a prefix grants object actions on bucket/* and nothing bucket-wide', () => {
    const stack = emptyStack();
    const { bucket } = new StagingBucket(stack, 'Staging', { allowedOrigins: ['https://relay.example.com'] });
    new RelayFunction(stack, 'Uploads', { handler: 'uploads' }).bindBucket(bucket, 'consume');
    const statements = Object.values(Template.fromStack(stack).findResources('AWS::IAM::Policy'))
      .flatMap((p) => p.Properties.PolicyDocument.Statement)
      .filter((s: any) => [s.Action].flat().some((a: string) => a.startsWith('s3:')));
    expect(statements).toHaveLength(1);
    expect(statements[0].Action).toEqual(['s3:GetObject', 's3:DeleteObject']);
    expect(statements[0].Resource['Fn::Join'][1][1]).toBe('/*');
  });

  test('defaults: 1024 MB, 29 s, no tracing, JSON logs, one month retention', () => {
    const stack = emptyStack();
    new RelayFunction(stack, 'Descriptor', { handler: 'descriptor' });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 1024,
      Timeout: 29,
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      LoggingConfig: { LogFormat: 'JSON' },
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });
});

describe('StagingBucket', () => {
  test.each([[[]], [['*']], [['https://relay.example.com', '*']]])('refuses allowedOrigins %j', (origins) => {
    expect(() => new StagingBucket(emptyStack(), 'Staging', { allowedOrigins: origins })).toThrow(/never "\*"/);
  });
});

describe('RelayApi', () => {
  test('corsAllowOrigins turns on API Gateway CORS for exactly those origins', () => {
    const stack = emptyStack();
    new RelayApi(stack, 'Api', { corsAllowOrigins: ['https://example.atlassian.net'] });
    Template.fromStack(stack).hasResourceProperties('AWS::ApiGatewayV2::Api', {
      CorsConfiguration: { AllowOrigins: ['https://example.atlassian.net'], AllowMethods: ['GET', 'POST'] },
    });
  });
});
