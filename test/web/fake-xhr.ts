import type { XhrLike } from '../../web/client';

/** A request as the fake server saw it. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | FormData | null;
  /** FormData entries in order: [name, string value or file name]. */
  parts: Array<[string, string]>;
}

export type Reply =
  | { status: number; body?: unknown; headers?: Record<string, string> }
  /** The connection fails (XHR `error`). */
  | 'network'
  /** No answer until the request is aborted. */
  | 'hang';

type Route = (request: SeenRequest) => Reply | undefined;

/**
 * A hand-written stand-in for the browser's XMLHttpRequest and the servers
 * behind it: routes answer by URL, uploads report progress in quarters, an
 * abort ends a request the way XHR does. Real XHR is exercised in Chromium
 * (test/browser); this one reaches the error branches.
 */
export class FakeServer {
  readonly requests: SeenRequest[] = [];
  private readonly routes: Array<{ test: (request: SeenRequest) => boolean; replies: Array<Reply | Route> }> = [];
  /** Requests currently in flight. */
  inFlight = 0;
  maxInFlight = 0;

  /** Answers matching requests with `replies` in turn (the last one repeats). */
  on(method: string, urlPrefix: string, ...replies: Array<Reply | Route>): this {
    this.routes.push({ test: (r) => r.method === method && r.url.startsWith(urlPrefix), replies });
    return this;
  }

  count(method: string, urlPrefix: string): number {
    return this.requests.filter((r) => r.method === method && r.url.startsWith(urlPrefix)).length;
  }

  readonly createXhr = (): XhrLike => new FakeXhr(this) as unknown as XhrLike;

  reply(request: SeenRequest): Reply {
    const route = this.routes.find((r) => r.test(request));
    if (!route) return { status: 404, body: { error: { code: 'not_found', message: `no fake route for ${request.method} ${request.url}` } } };
    const next = route.replies.length > 1 ? route.replies.shift()! : route.replies[0];
    const reply = typeof next === 'function' ? next(request) : next;
    return reply ?? { status: 500 };
  }
}

class FakeXhr {
  status = 0;
  responseText = '';
  timeout = 0;
  upload: { onprogress: ((e: { loaded: number; total: number; lengthComputable: boolean }) => void) | null; onload: (() => void) | null } = {
    onprogress: null,
    onload: null,
  };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  ontimeout: (() => void) | null = null;
  onabort: (() => void) | null = null;
  private request?: SeenRequest;
  private responseHeaders: Record<string, string> = {};
  private finished = false;

  constructor(private readonly server: FakeServer) {}

  open(method: string, url: string): void {
    this.request = { method, url, headers: {}, body: null, parts: [] };
  }

  setRequestHeader(name: string, value: string): void {
    this.request!.headers[name.toLowerCase()] = value;
  }

  getResponseHeader(name: string): string | null {
    return this.responseHeaders[name.toLowerCase()] ?? null;
  }

  abort(): void {
    if (this.finished) return;
    this.finish();
    this.onabort?.();
  }

  send(body: string | FormData | null): void {
    const request = this.request!;
    request.body = body;
    if (body instanceof FormData) {
      body.forEach((value, name) => request.parts.push([name, typeof value === 'string' ? value : value.name]));
    }
    this.server.requests.push(request);
    this.server.inFlight += 1;
    this.server.maxInFlight = Math.max(this.server.maxInFlight, this.server.inFlight);
    void this.run(request, body);
  }

  private finish(): void {
    this.finished = true;
    this.server.inFlight -= 1;
  }

  private async run(request: SeenRequest, body: string | FormData | null): Promise<void> {
    // The answer is chosen when the request is sent, so an aborted request still uses up its reply.
    const reply = this.server.reply(request);
    const tick = () => new Promise((resolve) => setTimeout(resolve, 1));
    await tick();
    if (body instanceof FormData) {
      let total = 200;
      body.forEach((value) => (total += typeof value === 'string' ? value.length : value.size));
      for (const quarter of [1, 2, 3, 4]) {
        if (this.finished) return;
        this.upload.onprogress?.({ loaded: (total * quarter) / 4, total, lengthComputable: true });
        await tick();
      }
    }
    if (this.finished || reply === 'hang') return;
    if (reply === 'network') {
      this.finish();
      this.onerror?.();
      return;
    }
    if (body instanceof FormData) this.upload.onload?.();
    await tick();
    if (this.finished) return;
    this.finish();
    this.status = reply.status;
    this.responseText = reply.body === undefined ? '' : typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body);
    this.responseHeaders = Object.fromEntries(Object.entries(reply.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    this.onload?.();
  }
}
