import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { AppError, badRequest } from './errors';

export type HttpEvent = APIGatewayProxyEventV2;
export type HttpResult = APIGatewayProxyStructuredResultV2 & { statusCode: number; headers: Record<string, string> };

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

/** A JSON response with the relay's default headers. */
export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResult {
  return {
    statusCode,
    headers: { 'content-type': 'application/json; charset=utf-8', ...SECURITY_HEADERS, ...headers },
    body: JSON.stringify(body),
  };
}

export function noContent(): HttpResult {
  return { statusCode: 204, headers: { ...SECURITY_HEADERS }, body: '' };
}

const GENERIC_MESSAGES: Record<number, string> = {
  400: 'The request is invalid.',
  401: 'Missing or invalid credentials.',
  403: 'You are not allowed to do this.',
  404: 'Not found.',
  409: 'Conflict.',
  413: 'Too large.',
  429: 'Too many requests; try again later.',
  500: 'Something went wrong on our side.',
  502: 'Confluence answered with an error.',
  503: 'The service is busy; try again later.',
  504: 'Confluence did not answer in time.',
};

/**
 * The one edge where anything thrown becomes the contract's error JSON.
 * Unknown errors become a 500 whose message says nothing about internals.
 */
export function errorResponse(error: unknown, requestId?: string): HttpResult {
  const appError =
    error instanceof AppError ? error : new AppError(500, 'internal_error', 'Internal error.', { expose: false, cause: error });
  const message = appError.expose ? appError.message : (GENERIC_MESSAGES[appError.status] ?? 'Error.');
  const body: Record<string, unknown> = { error: { code: appError.code, message } };
  if (requestId) body.requestId = requestId;
  return json(appError.status, body, appError.headers);
}

/** Case-insensitive header lookup (API Gateway lowercases names; tests may not). */
export function header(event: HttpEvent, name: string): string | undefined {
  const headers = event.headers ?? {};
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === wanted) return value;
  }
  return undefined;
}

/** The raw body bytes of an event, however API Gateway encoded them. */
export function bodyBuffer(event: HttpEvent): Buffer {
  if (!event.body) return Buffer.alloc(0);
  return Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
}

/** Parses a JSON object body or throws a 400 `bad_json`. */
export function jsonBody(event: HttpEvent): Record<string, unknown> {
  const text = bodyBuffer(event).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw badRequest('bad_json', 'The body must be a JSON object.', cause);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw badRequest('bad_json', 'The body must be a JSON object.');
  }
  return parsed as Record<string, unknown>;
}

/** The request id API Gateway assigned (the log correlation id). */
export function requestIdOf(event: HttpEvent): string | undefined {
  return event.requestContext?.requestId;
}

/** The path and query of the request as the client sent it, for qsh checks. */
export function requestTarget(event: HttpEvent): string {
  return event.rawQueryString ? `${event.rawPath}?${event.rawQueryString}` : event.rawPath;
}
