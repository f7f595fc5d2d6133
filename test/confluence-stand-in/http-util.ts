/**
 * Small HTTP helpers for the Confluence stand-in: reading request bodies (optionally throttled to simulate a
 * WAN link) and answering with JSON errors the way Confluence does.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Thrown by handlers to answer with a Confluence-style JSON error `{statusCode, message}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ReadBodyOptions {
  /** Read at most this many bytes per second (token bucket; the stream is paused while in debt). */
  bytesPerSecond?: number;
  /** Receives every chunk in order. Exceptions are caught; the first one is returned as `error` and the rest of
   * the body is drained without calling onChunk again (so the client can still read our answer). */
  onChunk?: (chunk: Buffer) => void;
  /** Registers a timer so that close() can cancel it. */
  trackTimer?: (t: NodeJS.Timeout, done: boolean) => void;
  /** Stop reading for `ms` once `afterBytes` body bytes have arrived (once). */
  stall?: { afterBytes: number; ms: number };
}

export interface ReadBodyResult {
  bytes: number;
  error?: unknown;
}

/**
 * Consumes the whole request body. Rejects if the client goes away before the body is complete.
 *
 * Throttling: a token bucket with a small burst allowance. Each chunk is charged in full when it arrives; if
 * that leaves the bucket in debt, the stream is paused until the debt is paid back at `bytesPerSecond`. That
 * pushes back on the socket (TCP flow control), which is what a slow link does to the sender.
 */
export function readBody(req: IncomingMessage, opts: ReadBodyOptions = {}): Promise<ReadBodyResult> {
  return new Promise((resolve, reject) => {
    const rate = opts.bytesPerSecond;
    // Burst: 10 ms worth of data, at least 16 KiB. Keeps small requests snappy without distorting large ones.
    const burst = rate ? Math.max(16 * 1024, rate / 100) : 0;
    let tokens = burst;
    let last = process.hrtime.bigint();
    let bytes = 0;
    let error: unknown;
    let settled = false;
    let stalled = false;

    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
    };

    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (error === undefined && opts.onChunk) {
        try {
          opts.onChunk(chunk);
        } catch (e) {
          error = e;
        }
      }
      if (opts.stall && !stalled && bytes >= opts.stall.afterBytes) {
        stalled = true;
        req.pause();
        const t = setTimeout(() => {
          opts.trackTimer?.(t, true);
          last = process.hrtime.bigint();
          req.resume();
        }, opts.stall.ms);
        opts.trackTimer?.(t, false);
        return;
      }
      if (!rate) return;
      const now = process.hrtime.bigint();
      tokens = Math.min(burst, tokens + (Number(now - last) / 1e9) * rate);
      last = now;
      tokens -= chunk.length;
      if (tokens < 0) {
        req.pause();
        const t = setTimeout(() => {
          opts.trackTimer?.(t, true);
          req.resume();
        }, Math.ceil((-tokens / rate) * 1000));
        opts.trackTimer?.(t, false);
      }
    });
    req.on('end', () => settle(() => resolve({ bytes, error })));
    req.on('error', (e) => settle(() => reject(e)));
    req.on('close', () => settle(() => reject(new Error('client closed the connection before the body was complete'))));
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json;charset=UTF-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** Confluence's error body shape. */
export function errorBody(status: number, message: string): { statusCode: number; message: string } {
  return { statusCode: status, message };
}

/**
 * Runs a handler and turns whatever it throws into a response: HttpError -> its status; anything else -> 500
 * (a bug in the stand-in or a bad input we failed to validate; never crash the server over it).
 * `onStatus` is called with the final status before the response is written.
 */
export async function runHandler(
  res: ServerResponse,
  handler: () => Promise<void>,
  onStatus: (status: number) => void = () => undefined,
): Promise<void> {
  try {
    await handler();
  } catch (e) {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (e instanceof HttpError) {
      onStatus(e.status);
      sendJson(res, e.status, errorBody(e.status, e.message), e.headers);
    } else {
      onStatus(500);
      const message = e instanceof Error ? e.message : String(e);
      sendJson(res, 500, errorBody(500, `stand-in internal error: ${message}`));
    }
  }
}
