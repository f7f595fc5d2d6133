import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';

export interface RelayTableProps {
  /**
   * DynamoDB deletion protection. When on, the table is also RETAINed by
   * CloudFormation, so `cdk destroy` leaves tenants' installs in place; when
   * off, the table is deleted with the stack.
   * @default true
   */
  readonly deletionProtection?: boolean;
  /**
   * The attribute (epoch seconds) DynamoDB's TTL deletes expired items by.
   * @default 'ttl'
   */
  readonly timeToLiveAttribute?: string;
}

/**
 * The one table holding tenants (installs and their shared secrets) and the
 * ticket ledger, keyed as functions/src/store/dynamo.ts describes: string
 * `pk` (`TENANT#<id>`) and `sk` (`#TENANT`, `TICKET#…`). On-demand billing
 * (traffic is bursty and small), point-in-time recovery (shared secrets are
 * not recoverable from anywhere else), encryption with the AWS-managed key.
 */
export class RelayTable extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string, props: RelayTableProps = {}) {
    super(scope, id);
    const protectedTable = props.deletionProtection ?? true;
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      timeToLiveAttribute: props.timeToLiveAttribute ?? 'ttl',
      deletionProtection: protectedTable,
      removalPolicy: protectedTable ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });
  }
}
