import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { API_GATEWAY_MAX_BODY_BYTES, API_GATEWAY_TIMEOUT_MS, LAMBDA_MAX_EVENT_BYTES } from '../uploads/limits';
import type { RouteDefinition } from '../routes';

export type LambdaHandler = (event: APIGatewayProxyEventV2, context: Context) => Promise<unknown>;

export interface ApiGatewayEmulatorOptions {
  routes: readonly RouteDefinition[];
  handlers: Record<string, LambdaHandler>;
  /** @default 30000 (API Gateway's integration timeout) */
  timeoutMs?: number;
}

/**
 * API Gateway (HTTP API, payload format 2.0, `$default` stage) in front of
 * in-process Lambda handlers, with the limits AWS enforces: 10 MB request
 * body, 6 MB invoke payload measured on the encoded event, 30 s integration
 * timeout. Binary bodies are base64-encoded as API Gateway does: only text/*,
 * JSON, XML and JavaScript arrive as text (aws.md §1).
 */
export function createApiGatewayServer(options: ApiGatewayEmulatorOptions): http.Server {
  const timeoutMs = options.timeoutMs ?? API_GATEWAY_TIMEOUT_MS;
  return http.createServer((req, res) => {
    handle(req, res, options, timeoutMs).catch(() => {
      if (!res.headersSent) send(res, 500, { message: 'Internal Server Error' });
      else res.destroy();
    });
  });
}

/**
 * API Gateway HTTP API route selection: an exact path wins, then paths with
 * `{name}` variables (one segment each; more literal segments first), and a
 * greedy `{name+}` (one or more trailing segments) only when nothing else
 * matches. Path parameters are handed over as they appear in the path.
 */
export function matchRoute(
  routes: readonly RouteDefinition[],
  method: string,
  path: string,
): { route: RouteDefinition; pathParameters?: Record<string, string> } | undefined {
  let best: { route: RouteDefinition; pathParameters?: Record<string, string>; rank: number } | undefined;
  for (const route of routes) {
    if (route.method !== method) continue;
    const pathParameters = matchPath(route.path, path);
    if (!pathParameters) continue;
    const literalSegments = route.path.split('/').filter((segment) => !segment.startsWith('{')).length;
    const rank = !route.path.includes('{') ? Infinity : route.path.includes('+}') ? -1 : literalSegments;
    if (!best || rank > best.rank) best = { route, rank, pathParameters: Object.keys(pathParameters).length ? pathParameters : undefined };
  }
  return best && { route: best.route, pathParameters: best.pathParameters };
}

function matchPath(pattern: string, path: string): Record<string, string> | undefined {
  const wanted = pattern.split('/');
  const got = path.split('/');
  const parameters: Record<string, string> = {};
  for (const [i, segment] of wanted.entries()) {
    const variable = /^\{(\w+)(\+?)\}$/.exec(segment);
    if (variable?.[2]) {
      const rest = got.slice(i).join('/');
      if (i !== wanted.length - 1 || rest === '') return undefined;
      parameters[variable[1]] = rest;
      return parameters;
    }
    if (i >= got.length) return undefined;
    if (variable) {
      if (got[i] === '') return undefined;
      parameters[variable[1]] = got[i];
    } else if (segment !== got[i]) {
      return undefined;
    }
  }
  return wanted.length === got.length ? parameters : undefined;
}

function send(res: http.ServerResponse, status: number, body: Record<string, unknown>, requestId = randomUUID()): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'apigw-requestid': requestId });
  res.end(text);
}

/** AWS's own answer for a limit, plus the contract's error object for clients that read only that. */
function awsError(message: string, code: string, detail: string): Record<string, unknown> {
  return { message, error: { code, message: detail } };
}

function isTextual(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const type = contentType.split(';')[0].trim().toLowerCase();
  return type.startsWith('text/') || ['application/json', 'application/xml', 'application/javascript'].includes(type);
}

/**
 * Reads the body as API Gateway hands it on: text as UTF-8, anything else as
 * base64. Undefined when it is over API Gateway's limit. (One join and one
 * encoding at the end: for a 4 MiB body that is under a millisecond, several
 * times cheaper than encoding chunk by chunk and joining the pieces.)
 */
export async function readBody(req: AsyncIterable<Buffer>, binary: boolean): Promise<{ bytes: number; text: string } | undefined> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req) {
    bytes += chunk.length;
    if (bytes > API_GATEWAY_MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return { bytes, text: Buffer.concat(chunks, bytes).toString(binary ? 'base64' : 'utf8') };
}

function lambdaContext(functionName: string, requestId: string, deadline: number): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/**
 * The size of `JSON.stringify(event)` without building it: base64 needs no
 * escaping, so a multi-megabyte body is counted, not copied.
 */
export function serializedBytes(event: APIGatewayProxyEventV2): number {
  const { body, ...rest } = event;
  const restBytes = Buffer.byteLength(JSON.stringify(rest));
  if (body === undefined) return restBytes;
  const bodyBytes = event.isBase64Encoded ? body.length + 2 : Buffer.byteLength(JSON.stringify(body));
  // `{...}` gains `,"body":<body>` (the rest is never empty).
  return restBytes + ',"body":'.length + bodyBytes;
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, options: ApiGatewayEmulatorOptions, timeoutMs: number) {
  const requestId = randomUUID();
  const url = new URL(req.url ?? '/', 'http://localhost');
  const method = (req.method ?? 'GET').toUpperCase();
  const match = matchRoute(options.routes, method, url.pathname);
  const route = match?.route;

  const body = await readBody(req, !isTextual(req.headers['content-type']));
  if (body === undefined) {
    send(res, 413, awsError('Request Entity Too Large', 'payload_too_large', 'The request is larger than API Gateway accepts (10 MB).'), requestId);
    req.resume();
    return;
  }
  if (!route) {
    send(res, 404, { message: 'Not Found', error: { code: 'not_found', message: 'No such route.' } }, requestId);
    return;
  }

  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    if (name === 'cookie') cookies.push(...(Array.isArray(value) ? value : value.split(/;\s*/)));
    else headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const query: Record<string, string> = {};
  for (const [name, value] of url.searchParams) query[name] = name in query ? `${query[name]},${value}` : value;
  const base64 = body.bytes > 0 && !isTextual(headers['content-type']);
  const now = new Date();

  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: `${route.method} ${route.path}`,
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    cookies: cookies.length ? cookies : undefined,
    headers,
    queryStringParameters: Object.keys(query).length ? query : undefined,
    pathParameters: match?.pathParameters,
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: 'local',
      http: {
        method,
        path: url.pathname,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: `${route.method} ${route.path}`,
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    body: body.bytes ? body.text : undefined,
    isBase64Encoded: base64,
  };

  // Lambda refuses an invoke whose serialized event exceeds 6 MB (aws.md §9).
  if (serializedBytes(event) > LAMBDA_MAX_EVENT_BYTES) {
    send(res, 413, awsError('Request Entity Too Large', 'payload_too_large', 'The request is larger than one Lambda invocation accepts.'), requestId);
    return;
  }

  const handler = options.handlers[route.handler];
  if (!handler) {
    send(res, 503, { message: 'Service Unavailable', error: { code: 'starting', message: 'The relay is still starting.' } }, requestId);
    return;
  }
  const deadline = Date.now() + timeoutMs;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const invocation = handler(event, lambdaContext(route.handler, requestId, deadline));
  const outcome = await Promise.race([invocation, timedOut]).finally(() => clearTimeout(timer));
  if (outcome === 'timeout') {
    send(res, 503, awsError('Service Unavailable', 'gateway_timeout', 'The relay did not answer within 30 seconds.'), requestId);
    return;
  }
  const result = outcome as { statusCode?: number; headers?: Record<string, string>; body?: string; isBase64Encoded?: boolean; cookies?: string[] };
  const payload = result.body ? Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8') : Buffer.alloc(0);
  res.writeHead(result.statusCode ?? 200, {
    ...(result.headers ?? {}),
    ...(result.cookies?.length ? { 'set-cookie': result.cookies } : {}),
    'content-length': payload.length,
    'apigw-requestid': requestId,
  });
  res.end(payload);
}
