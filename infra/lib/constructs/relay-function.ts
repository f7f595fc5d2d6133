import { CfnResource, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import path from 'node:path';
import { BUNDLE_SETTINGS, PROJECT_ROOT, handlerEntry } from '../bundling';

/** What a function may do with the relay's table. */
export type TableAccess = 'probe' | 'read' | 'readWrite';

/**
 * What a function may do with objects in a bucket:
 * `read` GetObject; `write` PutObject (also what presigning a POST/PUT needs);
 * `consume` GetObject + DeleteObject (relay a staged object, then remove it);
 * `readWrite` all three.
 */
export type BucketAccess = 'read' | 'write' | 'consume' | 'readWrite' | 'sweep';

/**
 * Exactly the DynamoDB calls the relay's stores make (functions/src/store/*):
 * Get/Put/Update/Delete for tenants and tickets, BatchGet to read a ticket
 * with its tenant in one round trip, Query + BatchWrite for an
 * uninstall that deletes a tenant's items. No Scan, no DescribeTable, no streams
 * (grantReadWriteData would add those). `probe` is the health check's one
 * GetItem; `read` is for status reads (a ticket with its tenant, a ledger item).
 */
const TABLE_ACTIONS: Record<TableAccess, readonly string[]> = {
  probe: ['dynamodb:GetItem'],
  read: ['dynamodb:GetItem', 'dynamodb:BatchGetItem'],
  readWrite: [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:Query',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
    'dynamodb:BatchWriteItem',
  ],
};

const BUCKET_ACTIONS: Record<BucketAccess, readonly string[]> = {
  read: ['s3:GetObject'],
  write: ['s3:PutObject'],
  consume: ['s3:GetObject', 's3:DeleteObject'],
  readWrite: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
  // Lists the prefix (a bucket-level grant, conditioned on the prefix below) and deletes leftovers.
  sweep: ['s3:DeleteObject'],
};

/** API Gateway cuts an integration at 30 s; the function stops first so it can still answer. */
export const API_FUNCTION_TIMEOUT = Duration.seconds(29);

export interface RelayFunctionProps {
  /**
   * Handler file name under functions/src/handlers (without `.ts`); its
   * `handler` export is the entry point.
   */
  readonly handler: string;
  /**
   * Memory in MB (CPU scales with it).
   * @default 1024
   */
  readonly memorySize?: number;
  /**
   * Invocation timeout.
   * @default Duration.seconds(29) — for functions behind API Gateway, which gives up at 30 s
   */
  readonly timeout?: Duration;
  /**
   * Retention of the function's log group.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Active X-Ray tracing. Off by default: the relay's logs and metrics already
   * carry the request id, and tracing adds cost and an IAM wildcard.
   * @default false
   */
  readonly tracing?: boolean;
  /**
   * `POWERTOOLS_SERVICE_NAME`: the `service` field of every log line and the
   * `service` dimension of every metric.
   * @default 'upload-relay'
   */
  readonly serviceName?: string;
  /**
   * `POWERTOOLS_METRICS_NAMESPACE`: the CloudWatch namespace of the EMF metrics.
   * @default 'ConfluenceUploadRelay'
   */
  readonly metricsNamespace?: string;
  /**
   * Extra environment variables. Prefer the bind helpers for anything that
   * needs a permission as well.
   * @default - none
   */
  readonly environment?: Record<string, string>;
  /**
   * Lambda runtime. nodejs20.x can no longer be created (deprecated 2026-04-30).
   * @default lambda.Runtime.NODEJS_22_X
   */
  readonly runtime?: lambda.Runtime;
}

/**
 * The relay's one house-default Lambda function: a `NodejsFunction` bundled
 * locally with the project's esbuild and the shared BUNDLE_SETTINGS (what
 * `npm run relay` runs is what deploys), Node 22 on ARM64, source maps on, a
 * JSON-format log group with retention, and a role that starts with nothing
 * but the right to write to that log group.
 *
 * Permissions come only through the bind helpers, which set the environment
 * variable the function reads and grant the matching IAM actions in one call,
 * so the two cannot drift apart.
 */
export class RelayFunction extends Construct {
  readonly function: NodejsFunction;
  readonly logGroup: logs.LogGroup;
  readonly role: iam.Role;
  readonly timeout: Duration;
  private readonly env = new Map<string, string>();

  constructor(scope: Construct, id: string, props: RelayFunctionProps) {
    super(scope, id);
    this.timeout = props.timeout ?? API_FUNCTION_TIMEOUT;
    const runtime = props.runtime ?? lambda.Runtime.NODEJS_22_X;

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      // Logs outlive the stack on purpose (incident review after a teardown);
      // retention still empties them.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Our own role instead of the managed AWSLambdaBasicExecutionRole, which
    // would allow writing to any log group in the account.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Relay function ${props.handler}: writes its own log group; the rest comes from bind helpers`,
    });
    this.logGroup.grantWrite(this.role);

    this.function = new NodejsFunction(this, 'Function', {
      entry: handlerEntry(props.handler),
      handler: 'handler',
      runtime,
      architecture: lambda.Architecture.ARM_64,
      // 1024 MB: the direct-upload function decodes the base64 request body a
      // slice at a time while streaming it on, so memory mostly buys CPU (TLS,
      // base64) here. The figure is to be confirmed by the bench
      // (`npm run bench:coldstart` and an upload run) before it is tuned.
      memorySize: props.memorySize ?? 1024,
      timeout: this.timeout,
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: props.tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: path.join(PROJECT_ROOT, 'package-lock.json'),
      bundling: {
        minify: BUNDLE_SETTINGS.minify,
        sourceMap: BUNDLE_SETTINGS.sourceMap,
        target: BUNDLE_SETTINGS.target,
        format: BUNDLE_SETTINGS.format === 'cjs' ? OutputFormat.CJS : OutputFormat.ESM,
        externalModules: [...BUNDLE_SETTINGS.externalModules],
        keepNames: BUNDLE_SETTINGS.keepNames,
        mainFields: [...BUNDLE_SETTINGS.mainFields],
        // Bundle with the esbuild in node_modules; never fall back to Docker.
        forceDockerBundling: false,
        logLevel: LogLevel.WARNING,
      },
    });

    this.setEnv('NODE_OPTIONS', '--enable-source-maps');
    this.setEnv('POWERTOOLS_SERVICE_NAME', props.serviceName ?? 'upload-relay');
    this.setEnv('POWERTOOLS_METRICS_NAMESPACE', props.metricsNamespace ?? 'ConfluenceUploadRelay');
    for (const [name, value] of Object.entries(props.environment ?? {})) this.setEnv(name, value);

    Validations.of(this).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        `${runtime.name} is the runtime the relay is built and tested for (nodejs22.x is supported until 2027-04-30). cdk-nag compares against the newest runtime aws-cdk-lib lists (nodejs26.x), whose Lambda availability is unconfirmed; moving up is a deliberate, tested upgrade, not a side effect of a library bump.`,
    });
    if (props.tracing) {
      Validations.of(this.role).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'xray:PutTraceSegments and xray:PutTelemetryRecords do not support resource-level permissions; this statement exists only when tracing is turned on.',
      });
    }
  }

  /**
   * Sets an environment variable. Setting the same name twice to different
   * values throws: two bindings fighting over one variable is a wiring bug.
   */
  setEnv(name: string, value: string): this {
    const existing = this.env.get(name);
    if (existing !== undefined && existing !== value) {
      throw new Error(`${this.node.path}: environment variable ${name} is already set to a different value`);
    }
    this.env.set(name, value);
    this.function.addEnvironment(name, value);
    return this;
  }

  /** Sets `TABLE_NAME` and grants exactly the item-level actions for `access` on the table. */
  bindTable(table: ITable, access: TableAccess): this {
    this.setEnv('TABLE_NAME', table.tableName);
    table.grant(this.function, ...TABLE_ACTIONS[access]);
    return this;
  }

  /**
   * Sets `envName` to the target function's name and allows invoking exactly
   * that function (no versions or aliases: no wildcard).
   */
  bindInvoke(envName: string, target: lambda.IFunction): this {
    this.setEnv(envName, target.functionName);
    this.function.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [target.functionArn] }),
    );
    return this;
  }

  /**
   * Sets `STAGING_BUCKET` and grants object-level actions for `access` on
   * `<bucket>/<prefix>*` only (no bucket-level actions, no listing).
   * @param prefix key prefix the grant is limited to, e.g. `staging/`; default the whole bucket
   */
  bindBucket(bucket: IBucket, access: BucketAccess, prefix = ''): this {
    this.setEnv('STAGING_BUCKET', bucket.bucketName);
    this.function.addToRolePolicy(
      new iam.PolicyStatement({
        actions: [...BUCKET_ACTIONS[access]],
        resources: [bucket.arnForObjects(`${prefix}*`)],
      }),
    );
    if (access === 'sweep') {
      this.function.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [bucket.bucketArn],
          conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
        }),
      );
    }
    const cfnBucket = bucket.node.defaultChild;
    if (cfnBucket instanceof CfnResource) {
      const logicalId = Stack.of(bucket).resolve(cfnBucket.logicalId) as string;
      Validations.of(this.role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${logicalId}.Arn>/${prefix}*]`,
        reason: `Object keys are chosen per upload at run time, so the grant names the key prefix "${prefix}" rather than single objects; it holds only ${BUCKET_ACTIONS[access].join(', ')} on object ARNs, nothing bucket-wide.`,
      });
    }
    return this;
  }
}
