import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import cdkJson from '../../cdk.json';
import { readRelayConfig } from '../../infra/lib/config';
import { RelayStack } from '../../infra/lib/relay-stack';
import { STAGED_RELAY_HANDLER } from '../../functions/src/routes';

/** Forge Remote in the stack: a KMS key seals the OAuth tokens tickets hold; only the functions that need it may use it. */
const APP_ID = 'ari:cloud:ecosystem::app/7f3c1a52-1111-4222-8333-944455556666';

function synth(context: Record<string, unknown>) {
  const app = new App({
    context: { ...cdkJson.context, '@aws-cdk/core:validateAgainstDefaultRules': false, 'aws:cdk:bundling-stacks': [], ...context },
  });
  const stack = new RelayStack(app, 'ForgeVariant', { config: readRelayConfig(app) });
  return { stack, template: Template.fromStack(stack) };
}

describe('Forge token key', () => {
  const { stack, template } = synth({ forgeAppIds: APP_ID });
  const resources = template.toJSON().Resources as Record<string, any>;
  const [keyId] = Object.entries(resources).find(([, r]) => r.Type === 'AWS::KMS::Key') ?? [];
  const envOf = (handler: string) => {
    const id = stack.resolve((stack.functions[handler].function.node.defaultChild as any).logicalId) as string;
    return resources[id].Properties.Environment.Variables as Record<string, unknown>;
  };
  const kmsActionsOf = (handler: string) => {
    const roleId = stack.resolve((stack.functions[handler].function.role!.node.defaultChild as any).logicalId) as string;
    return Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(roleId))
      .flatMap((r) => r.Properties.PolicyDocument.Statement)
      .filter((statement: any) => JSON.stringify(statement.Resource).includes(keyId as string))
      .flatMap((statement: any) => [statement.Action].flat())
      .sort();
  };

  it('exists with rotation when Forge is on, and the functions get FORGE_APP_IDS', () => {
    expect(keyId).toBeDefined();
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    expect(envOf('tickets').FORGE_APP_IDS).toBe(APP_ID);
  });

  it('lets tickets encrypt, uploads and the staged relay decrypt, and nobody else touch it', () => {
    expect(kmsActionsOf('tickets')).toEqual(['kms:Encrypt']);
    for (const handler of ['uploads', STAGED_RELAY_HANDLER]) {
      expect(kmsActionsOf(handler)).toEqual(['kms:Decrypt']);
      expect(envOf(handler).TOKEN_KMS_KEY_ID).toBeDefined();
    }
    for (const handler of ['descriptor', 'health', 'lifecycle-installed', 'uploads-status', 'uploads-complete']) {
      expect(kmsActionsOf(handler)).toEqual([]);
      expect(envOf(handler).TOKEN_KMS_KEY_ID).toBeUndefined();
    }
  });
});

describe('without Forge', () => {
  it('creates no key', () => {
    synth({ forgeAppIds: '' }).template.resourceCountIs('AWS::KMS::Key', 0);
  });
});

describe('cross-origin callers (Forge Custom UI)', () => {
  it('lets the configured origins call the API and POST to the staging bucket', () => {
    const origin = 'https://abc123.cdn.prod.atlassian-dev.net';
    const { template } = synth({ forgeAppIds: APP_ID, corsAllowOrigins: origin });
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      CorsConfiguration: { AllowOrigins: [origin], AllowMethods: ['GET', 'POST'], AllowHeaders: ['authorization', 'content-type'] },
    });
    const bucket = Object.values(template.toJSON().Resources as Record<string, any>).find(
      (r) => r.Type === 'AWS::S3::Bucket' && r.Properties?.CorsConfiguration,
    );
    expect(JSON.stringify(bucket.Properties.CorsConfiguration)).toContain(origin);
  });

  it('refuses an origin that is not https', () => {
    expect(() => synth({ corsAllowOrigins: 'http://insecure.example.com' })).toThrow('corsAllowOrigins');
  });
});
