import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import { ALL_HANDLERS, ROUTES, STAGED_RELAY_HANDLER, STAGING_SWEEPER_HANDLER } from '../../functions/src/routes';
import { prepareHandlerSources } from './bundling';
import { TTL_ATTRIBUTE } from '../../functions/src/store/dynamo';
import type { RelayDeploymentConfig } from './config';
import { Monitoring } from './constructs/monitoring';
import { RelayApi } from './constructs/relay-api';
import { RelayFunction, type BucketAccess, type TableAccess } from './constructs/relay-function';
import { RelayTable } from './constructs/relay-table';
import { StagingBucket } from './constructs/staging-bucket';

/**
 * Key prefix of staged uploads, the only part of the bucket functions may
 * touch. Must equal STAGING_PREFIX in functions/src/staging/s3.ts (the keys
 * the functions create); the access logs go to a different bucket.
 */
export const STAGED_OBJECT_PREFIX = 'staging/';

/** How one handler's function is wired: what it may touch, and anything unlike the house default. */
interface FunctionWiring {
  readonly table?: TableAccess;
  readonly stagingBucket?: BucketAccess;
  /** Env var that names another relay function this one invokes (asynchronously). */
  readonly invokes?: { readonly env: string; readonly handler: string };
  /** Functions not behind API Gateway may run longer than 29 s. */
  readonly timeout?: Duration;
  /** Settings for a function that is only invoked asynchronously. */
  readonly asyncInvoke?: { readonly retryAttempts: number; readonly maxEventAge: Duration };
  /** Environment beyond the shared configuration. */
  readonly environment?: Record<string, string>;
  /** Run on this schedule (EventBridge) instead of on demand. */
  readonly every?: Duration;
  /** Gets the staging bucket's origin (STAGING_UPLOAD_ORIGIN) for a page whose CSP must let browsers POST there; no permission. */
  readonly stagingUploadOrigin?: boolean;
  /** Seals (encrypt) or uses (decrypt) the Forge OAuth tokens tickets hold, with the deployment's KMS key. */
  readonly forgeTokens?: 'encrypt' | 'decrypt';
}

/**
 * What each handler may touch. Least privilege: the descriptor and the editor
 * page read nothing; health and the status poll only read; everything that
 * stores tenants or tickets reads and writes items; only the functions that
 * presign, inspect or relay staged files touch the staging bucket. A handler
 * missing here fails synthesis, so a new route gets a deliberate decision
 * rather than a default.
 */
const FUNCTION_WIRING: Record<string, FunctionWiring> = {
  descriptor: {},
  // Serves the editor page, whose CSP names the bucket browsers POST big files to.
  editor: { stagingUploadOrigin: true },
  health: { table: 'probe' },
  'lifecycle-installed': { table: 'readWrite' },
  'lifecycle-uninstalled': { table: 'readWrite' },
  // Signs presigned POSTs for staged files (the signer needs s3:PutObject).
  tickets: { table: 'readWrite', stagingBucket: 'write', forgeTokens: 'encrypt' },
  uploads: { table: 'readWrite', forgeTokens: 'decrypt' },
  // Checks the staged object (HEAD = s3:GetObject), deletes a mismatch, hands off to the staged relay.
  'uploads-complete': {
    table: 'readWrite',
    stagingBucket: 'consume',
    invokes: { env: 'STAGED_RELAY_FUNCTION', handler: STAGED_RELAY_HANDLER },
  },
  'uploads-status': { table: 'read' },
  // Streams the staged object to Confluence, then deletes it; not behind API Gateway.
  [STAGED_RELAY_HANDLER]: {
    table: 'readWrite',
    forgeTokens: 'decrypt',
    stagingBucket: 'consume',
    timeout: Duration.minutes(15),
    // No automatic retry: a retry after a crash mid-upload could attach the
    // file twice; the ledger's lease expires instead and the client may retry.
    // A start delayed by at most 1 minute plus a 15-minute run stays inside
    // the 16-minute lease uploads-complete takes on the file.
    asyncInvoke: { retryAttempts: 0, maxEventAge: Duration.minutes(1) },
    // One upload attempt may use the whole invocation (the function's own
    // deadline still caps it); the 25 s default is sized for API Gateway.
    environment: { UPSTREAM_TIMEOUT_MS: String(Duration.minutes(14).plus(Duration.seconds(30)).toMilliseconds()) },
  },
  // Deletes staged objects no ticket can complete any more and reports those
  // older than an hour (the "left behind" alarm); lists and deletes under the prefix only.
  [STAGING_SWEEPER_HANDLER]: { stagingBucket: 'sweep', timeout: Duration.minutes(5), every: Duration.minutes(15) },
};

/**
 * How each path authenticates, since API Gateway itself does not (the
 * functions verify Connect JWTs against per-tenant secrets and request
 * hashes, which no authorizer can). Paths absent here stay flagged by
 * cdk-nag (AwsSolutions-APIG4).
 */
const ROUTE_AUTHENTICATION: Record<string, string> = {
  '/atlassian-connect.json': 'none by design: Confluence fetches the Connect descriptor unauthenticated; it is a static public document.',
  '/health': 'none by design: a liveness probe that answers only {"status":"ok"}.',
  '/editor': 'none by design: the iframe page is public; it obtains a context JWT from AP inside Confluence and sends it to /tickets.',
  '/editor/{proxy+}': 'none by design: the editor page\'s static script and stylesheet (public, content-hashed); unknown names are 404.',
  '/lifecycle/installed': 'Connect signed-install JWT (RS256, key by kid from the install-keys CDN, aud = base URL, qsh); anything else is 401.',
  '/lifecycle/uninstalled': 'Connect signed-install JWT (RS256, key by kid from the install-keys CDN, aud = base URL, qsh); anything else is 401.',
  '/tickets': 'Connect context JWT (HS256 with the tenant secret, qsh) or a Forge Invocation Token (RS256 via JWKS); anything else is 401.',
  '/uploads': 'an upload ticket (Bearer) checked against the ticket ledger: tenant, user, content and declared files; anything else is 401.',
  '/uploads/complete': 'an upload ticket (Bearer) checked against the ticket ledger; anything else is 401.',
  '/uploads/status': 'an upload ticket (Bearer) checked against the ticket ledger; anything else is 401.',
};

export interface RelayStackProps extends StackProps {
  /** The validated deployment configuration (infra/lib/config.ts). */
  readonly config: RelayDeploymentConfig;
}

/**
 * The whole relay in one stack. Wiring only: the constructs carry the
 * defaults, this file decides who may touch what and what goes out.
 */
export class RelayStack extends Stack {
  readonly api: RelayApi;
  readonly functions: Record<string, RelayFunction> = {};

  constructor(scope: Construct, id: string, props: RelayStackProps) {
    super(scope, id, props);
    const { config } = props;

    const { table } = new RelayTable(this, 'Table', {
      deletionProtection: config.tableDeletionProtection,
      timeToLiveAttribute: TTL_ATTRIBUTE,
    });

    // The API comes first (without routes) so its URL can go into the
    // functions' RELAY_BASE_URL and the bucket's CORS: functions depend on the
    // API resource, routes depend on the functions, no cycle.
    this.api = new RelayApi(this, 'Api', {
      throttleRateLimit: config.throttleRateLimit,
      throttleBurstLimit: config.throttleBurstLimit,
      accessLogRetention: config.logRetentionDays,
      customDomain: config.customDomain,
      corsAllowOrigins: [...config.corsAllowOrigins],
    });
    const baseUrl = this.api.baseUrl;

    const staging = new StagingBucket(this, 'Staging', { allowedOrigins: [baseUrl, ...config.corsAllowOrigins] });
    // The presigned POST URLs the SDK makes are virtual-hosted and regional: https://<bucket>.s3.<region>.amazonaws.com/
    const stagingOrigin = `https://${staging.bucket.bucketRegionalDomainName}`;

    const environment: Record<string, string> = {
      RELAY_BASE_URL: baseUrl,
      APP_KEY: config.appKey,
      APP_NAME: config.appName,
      ALLOWED_TENANT_HOSTS: config.allowedTenantHosts.join(','),
      UPLOAD_AS: config.uploadAs,
      TICKET_TTL_SECONDS: String(config.ticketTtlSeconds),
      MAX_FILE_BYTES: String(config.maxFileBytes),
      MAX_FILES_PER_TICKET: String(config.maxFilesPerTicket),
      DIRECT_MAX_BYTES: String(config.directMaxBytes),
      ON_NAME_CONFLICT: config.onNameConflict,
      FORGE_APP_IDS: config.forgeAppIds.join(','),
      ALLOWED_FORGE_API_HOSTS: config.allowedForgeApiHosts.join(','),
      LOG_FILE_NAMES: String(config.logFileNames),
    };

    // Forge tickets hold the user's or the app's OAuth token for their lifetime,
    // encrypted with this key (bound to the ticket by the encryption context).
    const forgeTokenKey =
      config.forgeAppIds.length > 0
        ? new kms.Key(this, 'ForgeTokenKey', {
            description: 'Encrypts the Forge OAuth tokens upload tickets hold for at most their lifetime',
            enableKeyRotation: true,
            // Nothing sealed with it outlives a ticket by more than a day.
            removalPolicy: RemovalPolicy.DESTROY,
            pendingWindow: Duration.days(7),
          })
        : undefined;

    for (const handler of ALL_HANDLERS) {
      const wiring = FUNCTION_WIRING[handler];
      if (!wiring) {
        throw new Error(
          `functions/src/routes.ts has a handler "${handler}" that infra/lib/relay-stack.ts does not know: add it to FUNCTION_WIRING with the table/bucket access it needs.`,
        );
      }
      // Generated sources (the editor's browser assets) are built by the same function npm start uses.
      prepareHandlerSources(handler);
      const fn = new RelayFunction(this, pascalCase(handler), {
        handler,
        environment: { ...environment, ...wiring.environment, ...(wiring.stagingUploadOrigin ? { STAGING_UPLOAD_ORIGIN: stagingOrigin } : {}) },
        timeout: wiring.timeout,
        logRetention: config.logRetentionDays,
        tracing: config.tracing,
        serviceName: this.stackName,
        metricsNamespace: config.metricsNamespace,
      });
      if (wiring.table) fn.bindTable(table, wiring.table);
      if (wiring.stagingBucket) fn.bindBucket(staging.bucket, wiring.stagingBucket, STAGED_OBJECT_PREFIX);
      if (wiring.asyncInvoke) fn.function.configureAsyncInvoke(wiring.asyncInvoke);
      if (wiring.forgeTokens && forgeTokenKey) {
        // Exactly the one action each side needs (grantEncrypt would add ReEncrypt*/GenerateDataKey*).
        fn.setEnv('TOKEN_KMS_KEY_ID', forgeTokenKey.keyArn);
        fn.function.addToRolePolicy(
          new iam.PolicyStatement({ actions: [wiring.forgeTokens === 'encrypt' ? 'kms:Encrypt' : 'kms:Decrypt'], resources: [forgeTokenKey.keyArn] }),
        );
      }
      if (wiring.every) {
        new events.Rule(this, `${pascalCase(handler)}Schedule`, {
          schedule: events.Schedule.rate(wiring.every),
          targets: [new targets.LambdaFunction(fn.function, { retryAttempts: 0 })],
        });
      }
      this.functions[handler] = fn;
    }
    for (const [handler, wiring] of Object.entries(FUNCTION_WIRING)) {
      if (wiring.invokes && this.functions[handler]) {
        this.functions[handler].bindInvoke(wiring.invokes.env, this.functions[wiring.invokes.handler].function);
      }
    }

    for (const route of ROUTES) {
      this.api.addRoute({
        method: route.method,
        path: route.path,
        handler: this.functions[route.handler].function,
        authentication: ROUTE_AUTHENTICATION[route.path],
      });
    }

    new Monitoring(this, 'Monitoring', {
      api: this.api.api,
      functions: Object.values(this.functions),
      table,
      metricsNamespace: config.metricsNamespace,
      serviceName: this.stackName,
      alarmEmail: config.alarmEmail,
    });

    new CfnOutput(this, 'ApiUrl', { value: baseUrl, description: 'Base URL of the relay (RELAY_BASE_URL)' });
    new CfnOutput(this, 'DescriptorUrl', {
      value: `${baseUrl}/atlassian-connect.json`,
      description: 'Paste into Confluence: Settings > Manage apps > Upload app',
    });
    new CfnOutput(this, 'TableName', { value: table.tableName, description: 'DynamoDB table of tenants and tickets' });
    new CfnOutput(this, 'StagingBucketName', { value: staging.bucket.bucketName, description: 'S3 bucket for staged (large) uploads' });
    if (this.api.domainName) {
      new CfnOutput(this, 'CustomDomainTarget', {
        value: this.api.domainName.regionalDomainName,
        description: `Point a CNAME for ${config.customDomain?.domainName} at this name`,
      });
      new CfnOutput(this, 'ExecuteApiUrl', { value: this.api.api.apiEndpoint, description: 'The API\'s own endpoint (for checks before DNS is in place)' });
    }
  }
}

function pascalCase(name: string): string {
  return name.replace(/(^|[-_])([a-z0-9])/g, (_m, _sep, c: string) => c.toUpperCase());
}
