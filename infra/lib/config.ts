import type { Construct } from 'constructs';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';

/**
 * The deployment's configuration: read from CDK context (`cdk.json` defaults,
 * `-c key=value` overrides) ONCE, validated, frozen, and handed to the stack.
 * Every problem names its context key, so `cdk synth` fails with a message
 * the operator can act on instead of a half-configured relay.
 *
 * Ranges mirror what the functions accept (functions/src/core/config.ts), so
 * a value that synthesizes also passes the Lambda's cold-start validation.
 */
export type UploadAs = 'user' | 'app';
export type NameConflictPolicy = 'version' | 'rename' | 'fail';

export interface RelayDeploymentConfig {
  /** CloudFormation stack name. */
  readonly stackName: string;
  /** Host patterns of Confluence sites allowed to install (`*` = one DNS label). */
  readonly allowedTenantHosts: readonly string[];
  readonly uploadAs: UploadAs;
  readonly ticketTtlSeconds: number;
  readonly maxFileBytes: number;
  readonly maxFilesPerTicket: number;
  readonly directMaxBytes: number;
  readonly onNameConflict: NameConflictPolicy;
  /** Forge app ids (ARIs) accepted as Forge Invocation Token audience; empty = Forge off. */
  readonly forgeAppIds: readonly string[];
  readonly allowedForgeApiHosts: readonly string[];
  /**
   * Browser origins other than the relay's own that may call it and POST to the
   * staging bucket (Forge Custom UI is served from Atlassian's CDN).
   * @default none
   */
  readonly corsAllowOrigins: readonly string[];
  readonly appKey: string;
  readonly appName: string;
  /** Where alarm notifications are e-mailed; undefined = no subscription. */
  readonly alarmEmail?: string;
  /** Custom domain (with its ACM certificate in the stack's region); undefined = the execute-api URL. */
  readonly customDomain?: { readonly domainName: string; readonly certificateArn: string };
  readonly tableDeletionProtection: boolean;
  readonly logRetentionDays: RetentionDays;
  /** Steady-state requests per second across the whole API ($default stage). */
  readonly throttleRateLimit: number;
  /** Burst bucket size across the whole API ($default stage). */
  readonly throttleBurstLimit: number;
  /** Log file names (can be personal data). */
  readonly logFileNames: boolean;
  /** Active X-Ray tracing on every function. */
  readonly tracing: boolean;
  /** CloudWatch namespace of the relay's EMF metrics (POWERTOOLS_METRICS_NAMESPACE). */
  readonly metricsNamespace: string;
}

/**
 * The defaults, as written in `cdk.json`'s `context` (a test keeps the two equal).
 * They apply when a key is absent, e.g. in tests that build an App without cdk.json.
 */
export const CONTEXT_DEFAULTS = Object.freeze({
  stackName: 'ConfluenceUploadRelay',
  allowedTenantHosts: '*.atlassian.net',
  uploadAs: 'user',
  ticketTtlSeconds: 300,
  maxFileBytes: 104_857_600,
  maxFilesPerTicket: 20,
  directMaxBytes: 4_194_304,
  onNameConflict: 'version',
  forgeAppIds: '',
  allowedForgeApiHosts: 'api.atlassian.com',
  corsAllowOrigins: '',
  appKey: 'confluence-upload-relay',
  appName: 'Upload relay',
  alarmEmail: '',
  customDomainName: '',
  certificateArn: '',
  tableDeletionProtection: true,
  logRetentionDays: 30,
  throttleRateLimit: 50,
  throttleBurstLimit: 100,
  logFileNames: false,
  tracing: false,
  metricsNamespace: 'ConfluenceUploadRelay',
});

export type ContextKey = keyof typeof CONTEXT_DEFAULTS;

/** Confluence's REST endpoints cap a request at 2 GB (CONFCLOUD-77566); same bound as the functions. */
const CONFLUENCE_MAX_REQUEST_BYTES = 2 * 1024 ** 3;

/**
 * Largest raw file that fits one synchronous Lambda invoke once API Gateway has
 * base64-encoded it: 4 * ceil(B / 3) <= 6,291,456 bytes (reference/aws.md §9).
 */
export const LAMBDA_DIRECT_CEILING_BYTES = 4_718_592;

/** Same grammar as the functions' host patterns: labels, `*` = exactly one label. */
const HOST_PATTERN = /^(\*|[a-z0-9-]+)(\.(\*|[a-z0-9-]+))*$/;
const DOMAIN_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const EMAIL = /^[^\s@,;]+@[^\s@,;]+\.[a-z]{2,}$/i;
const ACM_CERTIFICATE_ARN = /^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[A-Za-z0-9-]+$/;
/** Connect app keys: at most 64 characters of [a-zA-Z0-9-._]. */
const CONNECT_APP_KEY = /^[a-zA-Z0-9._-]{1,64}$/;
/** CloudFormation stack names. */
const STACK_NAME = /^[A-Za-z][A-Za-z0-9-]{0,127}$/;
/** CloudWatch namespaces; `AWS/` is reserved for AWS services. */
const METRICS_NAMESPACE = /^(?!AWS\/)[A-Za-z0-9 ._\/#:-]{1,255}$/;
const VALID_RETENTION_DAYS = new Set<number>(
  Object.values(RetentionDays).filter((v): v is number => typeof v === 'number' && v !== RetentionDays.INFINITE),
);

/** Thrown when CDK context is invalid; the message lists every bad key. */
export class RelayContextError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid CDK context (cdk.json "context" or -c key=value):\n  - ${problems.join('\n  - ')}`);
    this.name = 'RelayContextError';
  }
}

/** Reads context values, collecting problems instead of stopping at the first one. */
class ContextReader {
  readonly problems: string[] = [];

  constructor(private readonly scope: Construct) {}

  private raw(key: ContextKey): unknown {
    const value = this.scope.node.tryGetContext(key);
    return value === undefined || value === null ? CONTEXT_DEFAULTS[key] : value;
  }

  private fail(key: ContextKey, problem: string, got: unknown): void {
    this.problems.push(`${key} ${problem}, got ${JSON.stringify(got)}`);
  }

  string(key: ContextKey): string {
    const value = this.raw(key);
    if (typeof value !== 'string') {
      this.fail(key, 'must be a string', value);
      return '';
    }
    return value.trim();
  }

  /** Whole numbers; `-c` overrides arrive as strings, so "600" is accepted too. */
  int(key: ContextKey, min: number, max: number): number {
    const value = this.raw(key);
    const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : '';
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) this.fail(key, `must be a whole number from ${min} to ${max}`, value);
    return n;
  }

  /** Positive numbers, decimals allowed (API Gateway's rate limit is a double). */
  positiveNumber(key: ContextKey, max: number): number {
    const value = this.raw(key);
    const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
    if (!Number.isFinite(n) || n <= 0 || n > max) this.fail(key, `must be a number above 0 and at most ${max}`, value);
    return n;
  }

  bool(key: ContextKey): boolean {
    const value = this.raw(key);
    if (typeof value === 'boolean') return value;
    if (typeof value === 'string') {
      const text = value.trim().toLowerCase();
      if (text === 'true') return true;
      if (text === 'false') return false;
    }
    this.fail(key, 'must be true or false', value);
    return false;
  }

  oneOf<T extends string>(key: ContextKey, allowed: readonly T[]): T {
    const value = this.string(key);
    if (!(allowed as readonly string[]).includes(value)) this.fail(key, `must be one of ${allowed.join(', ')}`, value);
    return value as T;
  }

  /** Comma-separated list (a JSON array is accepted as well). */
  list(key: ContextKey): string[] {
    const value = this.raw(key);
    if (Array.isArray(value) && value.every((item) => typeof item === 'string')) {
      return value.map((item: string) => item.trim()).filter(Boolean);
    }
    if (typeof value !== 'string') {
      this.fail(key, 'must be a comma-separated string', value);
      return [];
    }
    return value.split(',').map((item) => item.trim()).filter(Boolean);
  }

  /**
   * Host patterns as the functions match them, plus one rule of our own: the
   * last two labels must be literal, so a pattern can never open the SSRF
   * allow-list to every site on the internet (`*.*`, `*.com`).
   */
  hostPatterns(key: ContextKey, required: boolean): string[] {
    const patterns = this.list(key).map((p) => p.toLowerCase());
    if (required && patterns.length === 0) this.fail(key, 'must name at least one host pattern', this.raw(key));
    for (const pattern of patterns) {
      const labels = pattern.split('.');
      if (!HOST_PATTERN.test(pattern)) {
        this.fail(key, 'has a malformed host pattern (labels of a-z, 0-9, "-", or "*" for one label)', pattern);
      } else if (labels.length < 2 || labels.slice(-2).includes('*')) {
        this.fail(key, 'has a host pattern that is too broad (its last two labels must be literal)', pattern);
      }
    }
    return patterns;
  }
}

/**
 * Reads and validates the relay's context once. Throws {@link RelayContextError}
 * naming every invalid key; returns a frozen object otherwise.
 */
export function readRelayConfig(scope: Construct): RelayDeploymentConfig {
  const read = new ContextReader(scope);

  const stackName = read.string('stackName');
  if (!STACK_NAME.test(stackName)) read.problems.push(`stackName must be a CloudFormation stack name (letter first, then letters, digits, "-"), got ${JSON.stringify(stackName)}`);

  const maxFileBytes = read.int('maxFileBytes', 1, CONFLUENCE_MAX_REQUEST_BYTES);
  const directMaxBytes = read.int('directMaxBytes', 1, LAMBDA_DIRECT_CEILING_BYTES);

  const corsAllowOrigins = read.list('corsAllowOrigins');
  for (const origin of corsAllowOrigins) {
    if (!/^https:\/\/(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)+(:\d{1,5})?$/i.test(origin)) {
      read.problems.push(`corsAllowOrigins must list https origins like "https://app.example.com" (a leading "*." is allowed), got ${JSON.stringify(origin)}`);
    }
  }
  const forgeAppIds = read.list('forgeAppIds');
  for (const id of forgeAppIds) {
    if (!/^ari:cloud:ecosystem::app\/[A-Za-z0-9-]+$/.test(id)) {
      read.problems.push(`forgeAppIds must list Forge app ids like "ari:cloud:ecosystem::app/<uuid>", got ${JSON.stringify(id)}`);
    }
  }

  const appKey = read.string('appKey');
  if (!CONNECT_APP_KEY.test(appKey)) read.problems.push(`appKey must be 1-64 characters of letters, digits, ".", "_", "-", got ${JSON.stringify(appKey)}`);
  const appName = read.string('appName');
  if (appName.length === 0 || appName.length > 80) read.problems.push(`appName must be 1-80 characters, got ${JSON.stringify(appName)}`);

  const alarmEmail = read.string('alarmEmail');
  if (alarmEmail && !EMAIL.test(alarmEmail)) read.problems.push(`alarmEmail must be one e-mail address, got ${JSON.stringify(alarmEmail)}`);

  const domainName = read.string('customDomainName').toLowerCase();
  const certificateArn = read.string('certificateArn');
  if (domainName && !DOMAIN_NAME.test(domainName)) read.problems.push(`customDomainName must be a DNS name like "relay.example.com", got ${JSON.stringify(domainName)}`);
  if (certificateArn && !ACM_CERTIFICATE_ARN.test(certificateArn)) read.problems.push(`certificateArn must be an ACM certificate ARN, got ${JSON.stringify(certificateArn)}`);
  if (certificateArn && !domainName) read.problems.push('certificateArn is set but customDomainName is empty: set both or neither');
  if (domainName && !certificateArn) read.problems.push('customDomainName is set but certificateArn is empty: set both (an ACM certificate for the name, in the stack\'s region) or neither');

  const logRetentionDays = read.int('logRetentionDays', 1, 3653);
  if (!VALID_RETENTION_DAYS.has(logRetentionDays)) {
    read.problems.push(`logRetentionDays must be one of CloudWatch's retention periods (${[...VALID_RETENTION_DAYS].sort((a, b) => a - b).join(', ')}), got ${logRetentionDays}`);
  }

  const throttleRateLimit = read.positiveNumber('throttleRateLimit', 10_000);
  const throttleBurstLimit = read.int('throttleBurstLimit', 1, 5_000);

  const metricsNamespace = read.string('metricsNamespace');
  if (!METRICS_NAMESPACE.test(metricsNamespace)) read.problems.push(`metricsNamespace must be a CloudWatch namespace (not starting with "AWS/"), got ${JSON.stringify(metricsNamespace)}`);

  const config: RelayDeploymentConfig = {
    stackName,
    allowedTenantHosts: read.hostPatterns('allowedTenantHosts', true),
    uploadAs: read.oneOf('uploadAs', ['user', 'app'] as const),
    ticketTtlSeconds: read.int('ticketTtlSeconds', 10, 3600),
    maxFileBytes,
    maxFilesPerTicket: read.int('maxFilesPerTicket', 1, 100),
    directMaxBytes,
    onNameConflict: read.oneOf('onNameConflict', ['version', 'rename', 'fail'] as const),
    forgeAppIds,
    allowedForgeApiHosts: read.hostPatterns('allowedForgeApiHosts', true),
    corsAllowOrigins,
    appKey,
    appName,
    alarmEmail: alarmEmail || undefined,
    customDomain: domainName && certificateArn ? Object.freeze({ domainName, certificateArn }) : undefined,
    tableDeletionProtection: read.bool('tableDeletionProtection'),
    logRetentionDays: logRetentionDays as RetentionDays,
    throttleRateLimit,
    throttleBurstLimit,
    logFileNames: read.bool('logFileNames'),
    tracing: read.bool('tracing'),
    metricsNamespace,
  };

  if (read.problems.length > 0) throw new RelayContextError(read.problems);
  return Object.freeze({
    ...config,
    allowedTenantHosts: Object.freeze([...config.allowedTenantHosts]),
    forgeAppIds: Object.freeze([...config.forgeAppIds]),
    allowedForgeApiHosts: Object.freeze([...config.allowedForgeApiHosts]),
    corsAllowOrigins: Object.freeze([...config.corsAllowOrigins]),
  });
}
