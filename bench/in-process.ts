/**
 * For benchmarks that invoke the Lambda bundles in their own process: the
 * store and environment they need, and the API Gateway events and Lambda
 * context they are invoked with.
 */
import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { ensureTable, startDynalite } from '../functions/src/local/dynamodb-local';
import { documentClient } from '../functions/src/store/dynamo';
import { dynamoTenantStore } from '../functions/src/store/tenant-store';

const TABLE = 'bench';

export type Handler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyStructuredResultV2>;

/**
 * Dynalite with the relay's table, one installed tenant (the stand-in site),
 * and the environment the bundles read at load (set before they are required).
 */
export async function startInProcessStore(
  site: { clientKey: string; sharedSecret: string; baseUrl: string },
  env: Record<string, string> = {},
): Promise<{ close(): Promise<void> }> {
  const dynamo = await startDynalite();
  Object.assign(process.env, {
    DYNAMODB_ENDPOINT: dynamo.endpoint,
    TABLE_NAME: TABLE,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'x',
    AWS_SECRET_ACCESS_KEY: 'x',
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    RELAY_BASE_URL: 'http://localhost:3000',
    ON_NAME_CONFLICT: 'fail',
    POWERTOOLS_LOG_LEVEL: 'WARN',
    ...env,
  });
  await ensureTable(dynamo.endpoint, TABLE);
  await dynamoTenantStore(documentClient({ dynamodbEndpoint: dynamo.endpoint }), TABLE).put({
    tenantId: site.clientKey,
    sharedSecret: site.sharedSecret,
    baseUrl: site.baseUrl,
    installedAt: new Date().toISOString(),
  });
  return dynamo;
}

/** An API Gateway (payload 2.0) event as the local gateway builds it. */
export function apiEvent(method: string, rawPath: string, headers: Record<string, string>, body: Buffer, base64: boolean): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: `${method} ${rawPath}`,
    rawPath,
    rawQueryString: '',
    headers,
    requestContext: {
      accountId: '0',
      apiId: 'bench',
      domainName: 'localhost',
      domainPrefix: 'bench',
      requestId: randomUUID(),
      routeKey: `${method} ${rawPath}`,
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' },
    },
    body: body.toString(base64 ? 'base64' : 'utf8'),
    isBase64Encoded: base64,
  };
}

/** The Lambda context fields the handlers read. */
export function lambdaContext(functionName: string): Context {
  return { getRemainingTimeInMillis: () => 29_000, awsRequestId: randomUUID(), functionName } as unknown as Context;
}
