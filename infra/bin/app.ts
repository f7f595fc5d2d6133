import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { readRelayConfig } from '../lib/config';
import { RelayStack } from '../lib/relay-stack';

/**
 * The CDK app: one RelayStack configured from cdk.json context (read and
 * validated once, see infra/lib/config.ts), checked by cdk-nag's AwsSolutions
 * pack during synthesis.
 *
 * cdk-nag 3 is a policy-validation plugin, not an Aspect: findings appear in
 * `cdk synth` output and cdk.out/validation-report.json, and an unacknowledged
 * error fails synthesis. Acknowledgements (with reasons) sit next to the
 * resources they concern (Validations.of(construct).acknowledge).
 *
 * The stack is environment-agnostic unless CDK_DEFAULT_ACCOUNT/REGION are set
 * (the CLI sets them from the active profile at deploy time), so synthesis
 * works offline without credentials.
 */
const app = new App();
const config = readRelayConfig(app);

new RelayStack(app, config.stackName, {
  stackName: config.stackName,
  description: 'Confluence upload relay: HTTP API + Lambda + DynamoDB + S3 staging, with alarms',
  config,
  env:
    process.env.CDK_DEFAULT_ACCOUNT && process.env.CDK_DEFAULT_REGION
      ? { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION }
      : undefined,
});

Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
