import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface StagingBucketProps {
  /**
   * Origins allowed to POST/PUT objects from a browser: the relay's own origin
   * (its editor page sends staged files straight to S3). Never `*`.
   */
  readonly allowedOrigins: string[];
  /**
   * Days after which a staged object is deleted whatever happened to it.
   * S3 rounds expiry up to the next midnight UTC, so objects live 1-2 days.
   * @default 1
   */
  readonly expireAfterDays?: number;
  /**
   * Days the server access logs are kept in the log bucket.
   * @default 90
   */
  readonly accessLogRetentionDays?: number;
}

/**
 * The staging bucket for files too big for one Lambda request: the browser
 * puts them here with a presigned POST, the relay streams them to Confluence
 * and deletes them. Private (all public access blocked, bucket-owner-enforced
 * ownership), TLS 1.2+ only, SSE-S3, no versioning (nothing here is worth a
 * second copy), and a lifecycle rule that removes leftovers and aborts
 * forgotten multipart uploads after a day. Server access logs go to a
 * separate log bucket with its own expiry.
 */
export class StagingBucket extends Construct {
  readonly bucket: s3.Bucket;
  readonly accessLogBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: StagingBucketProps) {
    super(scope, id);
    // Grant S3 log delivery through a bucket policy rather than the legacy
    // LogDeliveryWrite ACL (ACLs stay disabled), whatever the app's flags say.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);
    if (props.allowedOrigins.length === 0 || props.allowedOrigins.includes('*')) {
      throw new Error(`${this.node.path}: allowedOrigins must name the relay's origin(s), and never "*"`);
    }
    const expireAfterDays = props.expireAfterDays ?? 1;

    this.accessLogBucket = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      // S3 server access logging can only deliver to SSE-S3 buckets.
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: false,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(props.accessLogRetentionDays ?? 90) }],
      // Access logs are evidence; they stay after a teardown and expire on their own.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: false,
      lifecycleRules: [
        {
          id: 'expire-staged-uploads',
          expiration: Duration.days(expireAfterDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      cors: [
        {
          allowedMethods: [s3.HttpMethods.POST, s3.HttpMethods.PUT],
          allowedOrigins: props.allowedOrigins,
          allowedHeaders: ['*'],
          // Browsers need the ETag to finish a multipart upload.
          exposedHeaders: ['ETag'],
          maxAge: 3000,
        },
      ],
      serverAccessLogsBucket: this.accessLogBucket,
      serverAccessLogsPrefix: 'staging-bucket/',
      // Staged objects are transient by definition: empty the bucket on `cdk destroy`.
      autoDeleteObjects: true,
      removalPolicy: RemovalPolicy.DESTROY,
    });
  }
}
