import { App, Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { rmSync } from 'node:fs';
import cdkJson from '../../cdk.json';
import { readRelayConfig } from '../../infra/lib/config';
import { RelayStack } from '../../infra/lib/relay-stack';

/**
 * cdk-nag 3 (AwsSolutions) over the stack. cdk-nag 3 is a CDK policy-validation
 * plugin: findings are not Annotations any more, so the pack is run directly
 * (`validateScope`) to see errors AND warnings, and also registered on the App
 * the way infra/bin/app.ts does, where an unacknowledged error fails synth.
 * Nag rules read templates, not code, so bundling is skipped here, and so is
 * CDK's generic CloudFormation-schema validation (cdk-synth.test.ts runs it).
 */
function buildApp(context: Record<string, unknown> = {}) {
  const app = new App({
    context: {
      ...cdkJson.context,
      'aws:cdk:bundling-stacks': [],
      '@aws-cdk/core:validateAgainstDefaultRules': false,
      ...context,
    },
  });
  const stack = new RelayStack(app, 'NagUnderTest', { config: readRelayConfig(app) });
  return { app, stack };
}

/** Every acknowledgement recorded anywhere in the tree, with its reason. */
function acknowledgements(root: IConstruct): { path: string; id: string; reason: string }[] {
  return root.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) =>
        Object.entries(entry.data as Record<string, string>).map(([id, reason]) => ({
          path: construct.node.path,
          id: id.replace(/^annotation::/i, ''),
          reason,
        })),
      ),
  );
}

const summarize = (report: ReturnType<AwsSolutionsChecks['validateScope']>) =>
  report.violations.map((v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`);

const variants: [string, Record<string, unknown>][] = [
  ['defaults (cdk.json)', {}],
  [
    'everything optional turned on',
    {
      tracing: true,
      alarmEmail: 'ops@example.com',
      customDomainName: 'relay.example.com',
      certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
      tableDeletionProtection: false,
      forgeAppIds: 'ari:cloud:ecosystem::app/6f4e2e7c-1111-4222-8333-944455556666',
    },
  ],
];

describe.each(variants)('AwsSolutions checks: %s', (_name, context) => {
  let built: ReturnType<typeof buildApp>;
  beforeAll(() => {
    built = buildApp(context);
  }, 120_000);
  afterAll(() => rmSync(built.app.outdir, { recursive: true, force: true }));

  test('no unacknowledged errors or warnings', () => {
    expect(summarize(new AwsSolutionsChecks().validateScope(built.stack))).toEqual([]);
  });

  test('registered on the App as in infra/bin/app.ts, synthesis succeeds with an empty report', () => {
    Validations.of(built.app).addPlugins(new AwsSolutionsChecks(built.app));
    expect(() => built.app.synth()).not.toThrow();
  });

  test('no CDK errors or warnings either (deprecations, unresolved math identifiers, ...)', () => {
    const annotations = Annotations.fromStack(built.stack);
    expect(annotations.findError('*', Match.anyValue())).toEqual([]);
    expect(annotations.findWarning('*', Match.anyValue())).toEqual([]);
    expect(annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-.*'))).toEqual([]);
  });

  test('every acknowledgement names a specific rule and carries a specific reason', () => {
    const acks = acknowledgements(built.stack);
    expect(acks.length).toBeGreaterThan(0);
    for (const ack of acks) {
      expect(ack.id).toMatch(/^AwsSolutions-[A-Z]+\d+(\[.+\])?$/);
      // A reason says why this resource is fine, not just "not needed".
      expect(ack.reason.length).toBeGreaterThan(80);
    }
  });
});

test('the acknowledged rules are exactly the reviewed ones', () => {
  const { stack } = buildApp({ tracing: true });
  const ids = [...new Set(acknowledgements(stack).map((a) => a.id))].sort();
  expect(ids).toEqual([
    'AwsSolutions-APIG4', // each route: authenticated by its function (Connect JWT / ticket) or public by contract
    'AwsSolutions-IAM5[Resource::*]', // X-Ray actions have no resource-level permissions (tracing only)
    'AwsSolutions-IAM5[Resource::<StagingBucketF0D7AEDD.Arn>/staging/*]', // per-upload object keys under one prefix
    'AwsSolutions-L1', // nodejs22.x, not the newest runtime aws-cdk-lib lists
  ]);
  // APIG4 is acknowledged route by route, never for the whole API.
  const apig4 = acknowledgements(stack).filter((a) => a.id === 'AwsSolutions-APIG4');
  expect(apig4.every((a) => /\/HttpApi\/(GET|POST)--/.test(a.path))).toBe(true);
});

test('the checks are live: a non-compliant bucket is reported (guards against a vacuous pass)', () => {
  const stack = new Stack(new App(), 'Control');
  new s3.Bucket(stack, 'Leaky');
  const rules = new AwsSolutionsChecks().validateScope(stack).violations.map((v) => v.ruleName);
  expect(rules).toEqual(expect.arrayContaining(['AwsSolutions-S1', 'AwsSolutions-S10']));
});
