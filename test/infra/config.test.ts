import { App } from 'aws-cdk-lib';
import { CONTEXT_DEFAULTS, RelayContextError, readRelayConfig } from '../../infra/lib/config';
import cdkJson from '../../cdk.json';

/** Context exactly as `cdk synth` sees it with no -c flags. */
const CDK_JSON_CONTEXT: Record<string, unknown> = cdkJson.context;

function configWith(context: Record<string, unknown>) {
  return readRelayConfig(new App({ context: { ...CDK_JSON_CONTEXT, ...context } }));
}

describe('deployment configuration (CDK context)', () => {
  test('cdk.json declares every context key with the same default the code falls back to', () => {
    for (const [key, value] of Object.entries(CONTEXT_DEFAULTS)) {
      expect({ key, value: CDK_JSON_CONTEXT[key] }).toEqual({ key, value });
    }
  });

  test('cdk.json runs the app with a TypeScript runner, no compile step', () => {
    expect(cdkJson.app).toBe('npx tsx infra/bin/app.ts');
  });

  test('defaults give the contract defaults, frozen', () => {
    const config = configWith({});
    expect(config).toEqual({
      stackName: 'ConfluenceUploadRelay',
      allowedTenantHosts: ['*.atlassian.net'],
      uploadAs: 'user',
      ticketTtlSeconds: 300,
      maxFileBytes: 104_857_600,
      maxFilesPerTicket: 20,
      directMaxBytes: 4_194_304,
      onNameConflict: 'version',
      forgeAppIds: [],
      allowedForgeApiHosts: ['api.atlassian.com'],
      appKey: 'confluence-upload-relay',
      appName: 'Upload relay',
      corsAllowOrigins: [],
      alarmEmail: undefined,
      customDomain: undefined,
      tableDeletionProtection: true,
      logRetentionDays: 30,
      throttleRateLimit: 50,
      throttleBurstLimit: 100,
      logFileNames: false,
      tracing: false,
      metricsNamespace: 'ConfluenceUploadRelay',
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.allowedTenantHosts)).toBe(true);
  });

  test('an App without any context (no cdk.json) gets the same defaults', () => {
    expect(readRelayConfig(new App())).toEqual(configWith({}));
  });

  test('-c overrides arrive as strings and are converted', () => {
    const config = configWith({
      uploadAs: 'app',
      ticketTtlSeconds: '600',
      maxFileBytes: '52428800',
      directMaxBytes: '4718592',
      tableDeletionProtection: 'false',
      logFileNames: 'TRUE',
      logRetentionDays: '90',
      throttleRateLimit: '12.5',
      throttleBurstLimit: '20',
      allowedTenantHosts: 'acme.atlassian.net, *.Example.com',
      forgeAppIds: 'ari:cloud:ecosystem::app/6f4e2e7c-1111-4222-8333-944455556666',
      alarmEmail: 'ops@example.com',
      customDomainName: 'Relay.Example.com',
      certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
    });
    expect(config).toMatchObject({
      uploadAs: 'app',
      ticketTtlSeconds: 600,
      maxFileBytes: 52_428_800,
      directMaxBytes: 4_718_592,
      tableDeletionProtection: false,
      logFileNames: true,
      logRetentionDays: 90,
      throttleRateLimit: 12.5,
      throttleBurstLimit: 20,
      allowedTenantHosts: ['acme.atlassian.net', '*.example.com'],
      forgeAppIds: ['ari:cloud:ecosystem::app/6f4e2e7c-1111-4222-8333-944455556666'],
      alarmEmail: 'ops@example.com',
      customDomain: {
        domainName: 'relay.example.com',
        certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
      },
    });
  });

  const CERT = 'arn:aws:acm:us-east-1:123456789012:certificate/abc-123';
  test.each<[string, Record<string, unknown>]>([
    ['uploadAs', { uploadAs: 'admin' }],
    ['maxFileBytes', { maxFileBytes: -1 }],
    ['maxFileBytes', { maxFileBytes: '100MB' }],
    ['maxFileBytes', { maxFileBytes: 3 * 1024 ** 3 }],
    ['directMaxBytes', { directMaxBytes: 4_718_593 }],
    ['directMaxBytes', { directMaxBytes: '0' }],
    ['ticketTtlSeconds', { ticketTtlSeconds: 'abc' }],
    ['ticketTtlSeconds', { ticketTtlSeconds: 5 }],
    ['maxFilesPerTicket', { maxFilesPerTicket: 1.5 }],
    ['onNameConflict', { onNameConflict: 'overwrite' }],
    ['allowedTenantHosts', { allowedTenantHosts: 'exa mple.com' }],
    ['allowedTenantHosts', { allowedTenantHosts: 'https://acme.atlassian.net' }],
    ['allowedTenantHosts', { allowedTenantHosts: '*.*' }],
    ['allowedTenantHosts', { allowedTenantHosts: '*.com' }],
    ['allowedTenantHosts', { allowedTenantHosts: '' }],
    ['allowedForgeApiHosts', { allowedForgeApiHosts: 'api..atlassian.com' }],
    ['forgeAppIds', { forgeAppIds: 'my-app' }],
    ['appKey', { appKey: 'has space' }],
    ['appName', { appName: '' }],
    ['alarmEmail', { alarmEmail: 'not-an-email' }],
    ['alarmEmail', { alarmEmail: 'a@example.com,b@example.com' }],
    ['certificateArn', { certificateArn: CERT }],
    ['certificateArn', { customDomainName: 'relay.example.com', certificateArn: 'arn:aws:iam::123456789012:role/x' }],
    ['customDomainName', { customDomainName: 'relay.example.com' }],
    ['customDomainName', { customDomainName: 'https://relay.example.com', certificateArn: CERT }],
    ['tableDeletionProtection', { tableDeletionProtection: 'maybe' }],
    ['logRetentionDays', { logRetentionDays: 45 }],
    ['throttleRateLimit', { throttleRateLimit: -5 }],
    ['throttleBurstLimit', { throttleBurstLimit: 0 }],
    ['logFileNames', { logFileNames: 'yes' }],
    ['stackName', { stackName: '1-bad_name' }],
    ['metricsNamespace', { metricsNamespace: 'AWS/Lambda' }],
  ])('invalid %s fails with the key in the message (%j)', (key, context) => {
    expect(() => configWith(context)).toThrow(RelayContextError);
    expect(() => configWith(context)).toThrow(new RegExp(`\\b${key}\\b`));
  });

  test('every invalid key is reported at once', () => {
    let error: unknown;
    try {
      configWith({ uploadAs: 'admin', maxFileBytes: -1, alarmEmail: 'x' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(RelayContextError);
    const problems = (error as RelayContextError).problems;
    expect(problems).toHaveLength(3);
    for (const key of ['uploadAs', 'maxFileBytes', 'alarmEmail']) {
      expect(problems.some((problem) => problem.startsWith(`${key} `))).toBe(true);
    }
  });
});
