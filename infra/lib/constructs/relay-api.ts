import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/**
 * One JSON object per request. Only metadata: no bodies, no headers (so no
 * `Authorization`, no cookies), no query strings (`/uploads/status?name=`
 * carries file names). Every value is quoted because API Gateway writes `-`
 * for an empty variable, which would not be valid JSON unquoted.
 */
export const ACCESS_LOG_FIELDS: Readonly<Record<string, string>> = Object.freeze({
  requestId: '$context.requestId',
  ip: '$context.identity.sourceIp',
  requestTime: '$context.requestTime',
  httpMethod: '$context.httpMethod',
  routeKey: '$context.routeKey',
  status: '$context.status',
  protocol: '$context.protocol',
  responseLength: '$context.responseLength',
  integrationLatency: '$context.integrationLatency',
  responseLatency: '$context.responseLatency',
  integrationError: '$context.integrationErrorMessage',
  /** API Gateway's own error (throttled, route not found, integration timeout). */
  errorMessage: '$context.error.message',
});

export interface RelayApiCustomDomain {
  /** e.g. `relay.example.com`; point a CNAME (or alias) at `regionalDomainName`. */
  readonly domainName: string;
  /** ARN of an ACM certificate for `domainName` in the stack's region. */
  readonly certificateArn: string;
}

export interface RelayApiProps {
  /**
   * Steady-state request rate (requests per second) of the `$default` stage.
   * @default 50
   */
  readonly throttleRateLimit?: number;
  /**
   * Burst capacity of the `$default` stage.
   * @default 100
   */
  readonly throttleBurstLimit?: number;
  /**
   * Retention of the access-log group.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly accessLogRetention?: logs.RetentionDays;
  /**
   * Serve the relay on this domain (API mapping on the `$default` stage).
   * @default - the execute-api endpoint only
   */
  readonly customDomain?: RelayApiCustomDomain;
  /**
   * Extra origins allowed to call the API from a browser (CORS preflight
   * answered by API Gateway). The relay's own pages are same-origin and need
   * nothing here.
   * @default - no CORS configuration
   */
  readonly corsAllowOrigins?: string[];
}

/** Options of {@link RelayApi.addRoute}. */
export interface RelayRouteOptions {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly handler: IFunction;
  /**
   * How the function authenticates this route, since API Gateway does not
   * (see the APIG4 acknowledgement). Routes without it stay flagged by cdk-nag.
   * @default - none: cdk-nag reports the route as unauthenticated
   */
  readonly authentication?: string;
}

/**
 * The relay's HTTP API: payload format 2.0 Lambda integrations, one route per
 * contract path, a `$default` stage that auto-deploys, throttled, with JSON
 * access logs. Authentication lives in the functions (Connect JWTs bound to
 * per-tenant secrets and request hashes, upload tickets), which no API
 * Gateway authorizer can check.
 */
export class RelayApi extends Construct {
  readonly api: apigwv2.HttpApi;
  readonly stage: apigwv2.HttpStage;
  readonly accessLogGroup: logs.LogGroup;
  readonly domainName?: apigwv2.DomainName;
  /** Public base URL without trailing slash: `https://<custom domain>` or the execute-api endpoint. */
  readonly baseUrl: string;

  constructor(scope: Construct, id: string, props: RelayApiProps = {}) {
    super(scope, id);

    this.api = new apigwv2.HttpApi(this, 'HttpApi', {
      description: 'Confluence upload relay',
      createDefaultStage: false,
      corsPreflight: props.corsAllowOrigins?.length
        ? {
            allowOrigins: props.corsAllowOrigins,
            allowMethods: [apigwv2.CorsHttpMethod.GET, apigwv2.CorsHttpMethod.POST],
            allowHeaders: ['authorization', 'content-type'],
            maxAge: Duration.hours(1),
          }
        : undefined,
    });

    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.accessLogRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    if (props.customDomain) {
      this.domainName = new apigwv2.DomainName(this, 'DomainName', {
        domainName: props.customDomain.domainName,
        certificate: acm.Certificate.fromCertificateArn(this, 'Certificate', props.customDomain.certificateArn),
        securityPolicy: apigwv2.SecurityPolicy.TLS_1_2,
      });
    }

    this.stage = this.api.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: props.throttleRateLimit ?? 50, burstLimit: props.throttleBurstLimit ?? 100 },
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogGroup),
        format: AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FIELDS)),
      },
      domainMapping: this.domainName ? { domainName: this.domainName } : undefined,
    });

    this.baseUrl = props.customDomain ? `https://${props.customDomain.domainName}` : this.api.apiEndpoint;
  }

  /** Adds `method path` with a payload-2.0 Lambda proxy integration. */
  addRoute(options: RelayRouteOptions): apigwv2.HttpRoute {
    const id = `${options.method}${options.path}`.replace(/[^A-Za-z0-9]/g, '');
    const [route] = this.api.addRoutes({
      path: options.path,
      methods: [apigwv2.HttpMethod[options.method]],
      integration: new HttpLambdaIntegration(`${id}Integration`, options.handler, {
        payloadFormatVersion: apigwv2.PayloadFormatVersion.VERSION_2_0,
      }),
    });
    if (options.authentication) {
      Validations.of(route).acknowledge({
        id: 'AwsSolutions-APIG4',
        reason: `${options.method} ${options.path} is authenticated by its function, not API Gateway: ${options.authentication}`,
      });
    }
    return route;
  }
}
