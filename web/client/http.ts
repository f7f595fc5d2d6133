import { UploadError } from './errors';

/** The part of XMLHttpRequest the library uses (so tests can pass a stand-in). */
export type XhrLike = Pick<
  XMLHttpRequest,
  'open' | 'setRequestHeader' | 'send' | 'abort' | 'getResponseHeader' | 'status' | 'responseText' | 'timeout'
> & {
  upload: { onprogress: ((event: { loaded: number; total: number; lengthComputable: boolean }) => void) | null; onload: (() => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  ontimeout: (() => void) | null;
  onabort: (() => void) | null;
};

export interface HttpRequest {
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  body?: string | FormData | null;
  signal?: AbortSignal;
  /** Bytes of the request body sent so far (XHR upload progress). */
  onUploadProgress?: (loaded: number, total: number) => void;
  /** All of the request body has been sent. */
  onUploaded?: () => void;
  /** 0 = none (uploads can take as long as the link needs). */
  timeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  text: string;
  header(name: string): string | null;
}

/**
 * One XHR round trip. Resolves with any HTTP answer; rejects with
 * `UploadError('network')` when there is none and `UploadError('aborted')`
 * when `signal` aborts it. XHR rather than fetch: fetch still reports no
 * upload progress in most browsers.
 */
export function send(createXhr: () => XhrLike, request: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const { signal } = request;
    if (signal?.aborted) return reject(new UploadError('aborted'));
    const xhr = createXhr();
    const onAbort = () => xhr.abort();
    const settle = (error?: UploadError) => {
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve({ status: xhr.status, text: xhr.responseText, header: (name) => xhr.getResponseHeader(name) });
    };
    xhr.open(request.method, request.url);
    for (const [name, value] of Object.entries(request.headers ?? {})) xhr.setRequestHeader(name, value);
    xhr.timeout = request.timeoutMs ?? 0;
    if (request.onUploadProgress) {
      const report = request.onUploadProgress;
      xhr.upload.onprogress = (event) => event.lengthComputable && report(event.loaded, event.total);
    }
    if (request.onUploaded) xhr.upload.onload = request.onUploaded;
    xhr.onload = () => settle();
    xhr.onerror = xhr.ontimeout = () => settle(new UploadError('network'));
    xhr.onabort = () => settle(new UploadError('aborted'));
    signal?.addEventListener('abort', onAbort);
    xhr.send(request.body ?? null);
  });
}

/** `Retry-After` in milliseconds: delta-seconds or an HTTP date. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Parses a JSON answer; `null` when the body is not JSON. */
export function parseJson(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The relay's error answer (`{error: {code, message}, requestId}`) as an
 * UploadError; an answer without that shape (a proxy's HTML page) gets a
 * code from its status.
 */
export function errorFromResponse(response: HttpResponse): UploadError {
  const body = parseJson(response.text);
  const error = body?.error as { code?: unknown; message?: unknown } | undefined;
  const code = typeof error?.code === 'string' ? error.code : statusCode(response.status);
  return new UploadError(code, {
    status: response.status,
    retryAfterMs: retryAfterMs(response.header('retry-after')),
    requestId: typeof body?.requestId === 'string' ? body.requestId : undefined,
    detail: typeof error?.message === 'string' ? error.message : undefined,
  });
}

function statusCode(status: number): string {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 413) return 'file_too_large';
  if (status === 429) return 'rate_limited';
  return status >= 500 ? 'upstream_unavailable' : 'bad_response';
}
