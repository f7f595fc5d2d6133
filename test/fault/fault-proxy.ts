/**
 * A fault-injecting HTTP proxy on loopback, put in front of a server the relay
 * talks to (dynalite as DYNAMODB_ENDPOINT, s3rver as S3_ENDPOINT, the install
 * key server, a Confluence site's base URL). Requests are forwarded verbatim
 * (the Host header too, so SigV4 signatures still verify), except the next N
 * requests that match a rule, which get the rule's fault instead:
 *
 * - `timeout`: the request is read completely, then never answered (until the
 *   client gives up or the proxy closes);
 * - `reset`: the request is read completely, then the socket is reset (RST);
 * - `status`: answered with that status, headers and body, nothing forwarded;
 * - `drip`: forwarded, but the request body goes upstream and the answer comes
 *   back in `slices` slices spread over `overMs` (a slow peer that stays alive).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  | { kind: 'timeout' }
  | { kind: 'reset' }
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  | { kind: 'drip'; slices?: number; overMs?: number };

export interface FaultMatch {
  method?: string;
  pathIncludes?: string;
  /** A header whose value must contain the text (name in lower case), e.g. `['x-amz-target', 'GetItem']`. */
  header?: [string, string];
  /** Text(s) the request body must contain (all of them). */
  bodyIncludes?: string | string[];
}

export interface FaultRule extends FaultMatch {
  fault: Fault;
  /** How many matching requests get the fault. Default 1; `Infinity` until cleared. */
  times?: number;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  /** The fault applied, if any. */
  fault?: Fault['kind'];
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT`, to use instead of the target's origin. */
  url: string;
  /** Adds a rule; returns a function that removes it again (faults in progress keep going). */
  add(rule: FaultRule): () => void;
  /** Removes every rule. */
  clear(): void;
  /** Every request seen, in arrival order. */
  requests: ProxiedRequest[];
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer']);

function matches(rule: FaultMatch, req: http.IncomingMessage, body: Buffer): boolean {
  if (rule.method && rule.method.toUpperCase() !== req.method) return false;
  if (rule.pathIncludes && !(req.url ?? '').includes(rule.pathIncludes)) return false;
  if (rule.header) {
    const value = req.headers[rule.header[0]];
    if (typeof value !== 'string' || !value.includes(rule.header[1])) return false;
  }
  const texts = rule.bodyIncludes === undefined ? [] : [rule.bodyIncludes].flat();
  if (texts.some((text) => !body.includes(text))) return false;
  return true;
}

async function readAll(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Writes `data` in `slices` pieces with a pause before each but the first. */
async function dripTo(write: (chunk: Buffer) => void, data: Buffer, slices: number, pauseMs: number, alive: () => boolean): Promise<void> {
  const size = Math.max(1, Math.ceil(data.length / slices));
  for (let offset = 0; offset < data.length; offset += size) {
    if (offset > 0) await sleep(pauseMs);
    if (!alive()) return;
    write(data.subarray(offset, offset + size));
  }
}

/** Starts a proxy to `target` (an origin such as `http://127.0.0.1:4567`). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const rules: Array<FaultRule & { remaining: number }> = [];
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();

  const server = http.createServer((req, res) => {
    res.on('error', () => undefined);
    void handle(req, res).catch(() => res.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readAll(req);
    const index = rules.findIndex((rule) => matches(rule, req, body));
    const rule = index >= 0 ? rules[index] : undefined;
    if (rule && (rule.remaining -= 1) <= 0) rules.splice(index, 1);
    const fault = rule?.fault;
    requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', ...(fault ? { fault: fault.kind } : {}) });

    if (fault?.kind === 'timeout') return; // never answered; the socket stays open until someone gives up
    if (fault?.kind === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    if (fault?.kind === 'status') {
      const text = fault.body ?? JSON.stringify({ message: `injected ${fault.status}` });
      res.writeHead(fault.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...fault.headers });
      res.end(text);
      return;
    }

    const drip = fault?.kind === 'drip' ? { slices: fault.slices ?? 16, pauseMs: (fault.overMs ?? 600) / (2 * (fault.slices ?? 16)) } : undefined;
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
    if (body.length > 0 || req.headers['content-length'] !== undefined) headers['content-length'] = String(body.length);
    const outbound = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers,
      agent: false,
    });
    let clientGone = false;
    res.on('close', () => {
      clientGone = true;
      if (!res.writableFinished) outbound.destroy();
    });
    const answered = new Promise<http.IncomingMessage>((resolve, reject) => {
      outbound.once('response', resolve);
      outbound.once('error', reject);
    });
    answered.catch(() => undefined);
    if (drip) await dripTo((chunk) => outbound.write(chunk), body, drip.slices, drip.pauseMs, () => !clientGone);
    else outbound.write(body);
    outbound.end();
    let response: http.IncomingMessage;
    try {
      response = await answered;
    } catch {
      req.socket.resetAndDestroy();
      return;
    }
    const responseHeaders: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(response.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) responseHeaders[name] = value;
    const answer = await readAll(response).catch(() => undefined);
    if (answer === undefined) {
      req.socket.resetAndDestroy();
      return;
    }
    res.writeHead(response.statusCode ?? 502, responseHeaders);
    if (drip) await dripTo((chunk) => res.write(chunk), answer, drip.slices, drip.pauseMs, () => !clientGone);
    else res.write(answer);
    res.end();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    add(rule) {
      const entry = { ...rule, remaining: rule.times ?? 1 };
      rules.push(entry);
      return () => {
        const at = rules.indexOf(entry);
        if (at >= 0) rules.splice(at, 1);
      };
    },
    clear() {
      rules.length = 0;
    },
    async close() {
      rules.length = 0;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A stand-in for Atlassian's install-key CDN that serves any number of keys
 * (`GET /{kid}` → PEM), so every install in a test can use a kid the relay
 * has not cached yet and the key fetch really happens.
 */
export async function startKeyServer(): Promise<{ url: string; addKey(kid: string, publicKeyPem: string): void; close(): Promise<void> }> {
  const keys = new Map<string, string>();
  const server = http.createServer((req, res) => {
    const pem = keys.get(decodeURIComponent((req.url ?? '/').slice(1)));
    res.writeHead(pem ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(pem ?? 'not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    addKey: (kid, pem) => keys.set(kid, pem),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
