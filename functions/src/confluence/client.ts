import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { AppError } from '../core/errors';
import type { AttachmentResult } from '../store/ticket-store';

/**
 * Where and how to reach one tenant's Confluence: its base URL (with the
 * `/wiki` context path) and a function that authorises a call (app JWT with
 * qsh, or a bearer token for a user or a Forge app).
 */
export interface ConfluenceTarget {
  baseUrl: string;
  authorize(method: string, url: string): string;
}

export interface UploadFile {
  name: string;
  size: number;
  type: string;
}

export interface UploadOptions {
  target: ConfluenceTarget;
  contentId: string;
  file: UploadFile;
  /** The file's bytes; must yield exactly `file.size` bytes. */
  body: AsyncIterable<Buffer> | Readable;
  comment?: string;
  minorEdit: boolean;
  /** `PUT` creates or adds a version; `POST` only creates (400 on an existing name). */
  method: 'POST' | 'PUT';
  timeoutMs: number;
  /**
   * Awaited after the file's bytes and before the closing boundary: a
   * rejection cuts the request short (it never reaches its Content-Length,
   * so Confluence cannot store it) and is what the upload fails with.
   */
  beforeEnd?(): Promise<void>;
  /** Aborting it cuts the request off at once (whatever is in flight), so Confluence stores nothing. */
  signal?: AbortSignal;
}

/**
 * Why an upload failed, as far as the Confluence side is concerned: `definite`
 * means Confluence cannot have created anything (it refused, or never got the
 * whole body), so the file may be sent again; otherwise the outcome is unknown.
 */
export class UpstreamError extends AppError {
  readonly definite: boolean;
  /** Confluence's HTTP status, when it answered. */
  readonly upstreamStatus?: number;
  /** How long Confluence asked us to wait (Retry-After), when it said. */
  readonly retryAfterMs?: number;
  constructor(
    status: number,
    code: string,
    message: string,
    definite: boolean,
    options: ConstructorParameters<typeof AppError>[3] & { upstreamStatus?: number; retryAfterMs?: number } = {},
  ) {
    super(status, code, message, options);
    this.definite = definite;
    this.upstreamStatus = options.upstreamStatus;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Parses `Retry-After` (delay in seconds, or an HTTP date) into milliseconds from `nowMs`. */
export function parseRetryAfter(value: string | null | undefined, nowMs = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d{1,7}$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

const MAX_RESPONSE_BYTES = 1024 * 1024;

/**
 * WHATWG form-data encoding of a filename inside a quoted parameter: raw UTF-8,
 * with `"`, CR and LF percent-encoded, as browsers do. Control characters and
 * backslashes never get here (the ticket refuses such names).
 */
function quoteFilename(name: string): string {
  return name.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** The multipart envelope around one file, sized so the request has an exact Content-Length. */
export function multipartEnvelope(file: UploadFile, comment: string | undefined, minorEdit: boolean) {
  const boundary = `----confluence-upload-relay-${randomBytes(16).toString('hex')}`;
  const parts: string[] = [];
  // Confluence pairs comments with files by order; a text part without a charset
  // is read as ISO-8859-1, hence the explicit UTF-8 (atlassian.md §5.1).
  if (comment !== undefined) {
    parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="comment"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${comment}\r\n`);
  }
  parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="minorEdit"\r\n\r\n${minorEdit ? 'true' : 'false'}\r\n`);
  parts.push(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${quoteFilename(file.name)}"\r\nContent-Type: ${file.type}\r\n\r\n`,
  );
  const head = Buffer.from(parts.join(''), 'utf8');
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8');
  return { boundary, head, tail, contentLength: head.length + file.size + tail.length };
}

async function* framed(
  head: Buffer,
  body: AsyncIterable<Buffer>,
  size: number,
  tail: Buffer,
  beforeEnd?: () => Promise<void>,
): AsyncGenerator<Buffer> {
  yield head;
  let sent = 0;
  for await (const chunk of body) {
    sent += chunk.length;
    // Never forward a byte beyond the declared size: the request is cut short,
    // and a truncated multipart body can never become an attachment.
    if (sent > size) throw new AppError(413, 'larger_than_declared', 'The file is larger than declared on the ticket.');
    yield chunk;
  }
  if (sent !== size) throw new AppError(400, 'size_mismatch', 'The file is smaller than declared on the ticket.');
  await beforeEnd?.();
  yield tail;
}

/** What the browser is told to wait, in whole seconds (at least 1). */
export function retryAfterHeader(ms: number | undefined): Record<string, string> {
  return { 'retry-after': String(Math.max(1, Math.ceil((ms ?? 5000) / 1000))) };
}

/**
 * Maps a Confluence error answer to the contract's error. `definite` says
 * whether Confluence can have created anything: a 4xx refusal cannot; a 5xx
 * other than 503 might have happened after the attachment was stored.
 */
export function mapUpstreamStatus(status: number, body: string, headers: http.IncomingHttpHeaders): UpstreamError {
  const retryAfterMs = parseRetryAfter(Array.isArray(headers['retry-after']) ? headers['retry-after'][0] : headers['retry-after']);
  const options = { upstreamStatus: status, retryAfterMs, reason: `upstream_status_${status}` };
  if (status === 400 && /same file name/i.test(body)) {
    return new UpstreamError(409, 'name_conflict', 'The page already has an attachment with this name.', true, options);
  }
  if (status === 401) {
    return new UpstreamError(502, 'upstream_unauthorized', 'Confluence did not accept the relay\'s credentials.', true, options);
  }
  if (status === 403) return new UpstreamError(403, 'forbidden', 'You may not add attachments to this page.', true, options);
  if (status === 404) return new UpstreamError(404, 'content_not_found', 'The page does not exist or cannot be seen.', true, options);
  if (status === 413) return new UpstreamError(413, 'exceeds_site_limit', "The file is larger than this site's attachment limit.", true, options);
  if (status === 429) {
    return new UpstreamError(429, 'rate_limited', 'Confluence is rate limiting; try again later.', true, {
      ...options,
      headers: retryAfterHeader(retryAfterMs),
    });
  }
  if (status === 503) {
    return new UpstreamError(503, 'upstream_unavailable', 'Confluence is unavailable; try again later.', true, {
      ...options,
      headers: retryAfterHeader(retryAfterMs),
    });
  }
  return new UpstreamError(502, 'upstream_error', 'Confluence answered with an error.', status < 500, options);
}

function readBody(response: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    response.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length <= MAX_RESPONSE_BYTES) chunks.push(chunk);
    });
    response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    response.on('error', reject);
  });
}

function toNumber(value: unknown): number {
  const number = typeof value === 'string' ? Number(value) : value;
  return typeof number === 'number' && Number.isFinite(number) ? number : NaN;
}

/** Reads the first result of Confluence's ContentArray answer into the contract's shape. */
export function parseAttachment(name: string, body: string, baseUrl: string): AttachmentResult {
  const parsed = JSON.parse(body) as {
    results?: Array<Record<string, any>>;
    _links?: { base?: string };
  };
  const result = parsed.results?.[0];
  if (!result || typeof result.id !== 'string') throw new Error('Confluence answered without an attachment');
  const base = parsed._links?.base ?? baseUrl;
  const download: string | undefined = result._links?.download;
  return {
    name,
    id: result.id,
    title: String(result.title ?? name),
    mediaType: String(result.extensions?.mediaType ?? result.metadata?.mediaType ?? 'application/octet-stream'),
    // Confluence has been seen answering fileSize as a string (atlassian.md §5.2).
    fileSize: toNumber(result.extensions?.fileSize),
    version: toNumber(result.version?.number ?? 1),
    downloadUrl: download ? new URL(base.replace(/\/+$/, '') + download).toString() : '',
  };
}

/**
 * Streams one file into `{baseUrl}/rest/api/content/{id}/child/attachment` as a
 * multipart request with an exact Content-Length; nothing is buffered beyond
 * the chunks in flight.
 */
export async function uploadAttachment(options: UploadOptions): Promise<AttachmentResult> {
  const { target, file } = options;
  const url = `${target.baseUrl}/rest/api/content/${encodeURIComponent(options.contentId)}/child/attachment`;
  const envelope = multipartEnvelope(file, options.comment, options.minorEdit);
  const transport = url.startsWith('https:') ? https : http;

  const request = transport.request(url, {
    method: options.method,
    headers: {
      authorization: target.authorize(options.method, url),
      'x-atlassian-token': 'no-check',
      'content-type': `multipart/form-data; boundary=${envelope.boundary}`,
      'content-length': String(envelope.contentLength),
      accept: 'application/json',
    },
  });

  let bodySent = false;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    request.destroy(new Error('upstream timeout'));
  }, options.timeoutMs);
  const onAbort = () => {
    if (!bodySent) request.destroy(new Error('upload stopped'));
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();

  const responded = new Promise<http.IncomingMessage>((resolve, reject) => {
    request.once('response', resolve);
    request.once('error', reject);
    // pipeline() ends a failed request with abort(), which closes it without an 'error'.
    request.once('close', () => reject(new Error('request closed before an answer')));
  });
  // Confluence may answer (403, 404, 429...) before it has read the body; keep that answer.
  responded.catch(() => undefined);

  try {
    const sending = pipeline(framed(envelope.head, options.body as AsyncIterable<Buffer>, file.size, envelope.tail, options.beforeEnd), request).then(
      () => {
        bodySent = true;
      },
    );
    const [sendOutcome, responseOutcome] = await Promise.allSettled([sending, responded]);
    if (sendOutcome.status === 'rejected' && sendOutcome.reason instanceof AppError) throw sendOutcome.reason;
    if (responseOutcome.status === 'rejected') {
      if (timedOut) {
        throw new UpstreamError(504, 'upstream_timeout', 'Confluence did not answer in time.', !bodySent, {
          cause: responseOutcome.reason,
        });
      }
      throw new UpstreamError(502, 'upstream_error', 'Confluence could not be reached.', !bodySent, {
        cause: responseOutcome.reason,
        reason: 'upstream_connection_failed',
      });
    }
    const response = responseOutcome.value;
    const text = await readBody(response);
    const status = response.statusCode ?? 0;
    if (status < 200 || status >= 300) throw mapUpstreamStatus(status, text, response.headers);
    try {
      return parseAttachment(file.name, text, target.baseUrl);
    } catch (cause) {
      // Confluence said yes but the answer is unreadable: the attachment may exist.
      throw new UpstreamError(502, 'upstream_error', 'Confluence answered in an unexpected shape.', false, { cause });
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

export interface JsonCallOptions {
  target: ConfluenceTarget;
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  timeoutMs: number;
  fetchImpl?: typeof fetch;
}

/** A small JSON call to Confluence's REST API (permission checks, look-ups). */
export async function callConfluenceJson(options: JsonCallOptions): Promise<{ status: number; body: unknown; headers: Headers }> {
  const url = `${options.target.baseUrl}${options.path}`;
  let response: Response;
  try {
    response = await (options.fetchImpl ?? fetch)(url, {
      method: options.method,
      headers: {
        authorization: options.target.authorize(options.method, url),
        accept: 'application/json',
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(options.timeoutMs),
      redirect: 'error',
    });
  } catch (cause) {
    const timedOut = (cause as Error)?.name === 'TimeoutError';
    throw timedOut
      ? new UpstreamError(504, 'upstream_timeout', 'Confluence did not answer in time.', true, { cause })
      : new UpstreamError(502, 'upstream_error', 'Confluence could not be reached.', true, { cause, reason: 'upstream_connection_failed' });
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: response.status, body, headers: response.headers };
}

/**
 * Asks Confluence, as the app, whether `accountId` may edit `contentId`, so the
 * app's own rights are never lent to a user who may only view the page.
 */
export async function checkEditPermission(
  access: { target(): Promise<ConfluenceTarget>; renew?(): Promise<void> },
  contentId: string,
  accountId: string,
  timeoutMs: number,
): Promise<void> {
  try {
    await checkEditPermissionOnce(await access.target(), contentId, accountId, timeoutMs);
  } catch (error) {
    // A user token Confluence no longer accepts is renewed once.
    if (!(error instanceof AppError) || error.reason !== 'permission_check_status_401' || !access.renew) throw error;
    await access.renew();
    await checkEditPermissionOnce(await access.target(), contentId, accountId, timeoutMs);
  }
}

async function checkEditPermissionOnce(target: ConfluenceTarget, contentId: string, accountId: string, timeoutMs: number): Promise<void> {
  const { status, body, headers } = await callConfluenceJson({
    target,
    method: 'POST',
    path: `/rest/api/content/${encodeURIComponent(contentId)}/permission/check`,
    body: { subject: { type: 'user', identifier: accountId }, operation: 'update' },
    timeoutMs,
  });
  if (status === 200) {
    if ((body as { hasPermission?: unknown } | undefined)?.hasPermission === true) return;
    throw new AppError(403, 'forbidden', 'You may not edit this page.');
  }
  if (status === 401 || status === 403) {
    // Confluence refused the check itself (not the user): checking another
    // user's rights needs the app's user to be a Confluence administrator.
    // Fail closed, and say so.
    throw new AppError(502, 'permission_check_refused', 'Confluence did not let the app check permissions on this page.', {
      reason: `permission_check_status_${status}`,
      expose: true,
    });
  }
  throw mapUpstreamStatus(status, '', { 'retry-after': headers.get('retry-after') ?? undefined });
}
