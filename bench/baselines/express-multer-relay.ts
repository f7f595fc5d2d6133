/**
 * The usual way vendors relay uploads to Confluence today, written by us for
 * comparison (bench:baseline): an Express server whose route takes the
 * browser's multipart upload with multer's memoryStorage (every file is held
 * in memory whole), checks the Connect context JWT, then re-posts each
 * buffered file to `{baseUrl}/rest/api/content/{id}/child/attachment` with the
 * `form-data` package, as the app (`Authorization: JWT` with qsh,
 * `X-Atlassian-Token: no-check`).
 *
 * It is a fair version of the pattern, not a straw man: form-data streams the
 * buffers it was given with an exact Content-Length (no second copy of the
 * file), and the JWT check runs on the headers while the body is still
 * arriving. Like any Connect app (atlassian-connect-express reads the
 * tenant's clientInfo from its store on every request) it reads the tenant's
 * shared secret from a database: a DynamoDB table on dynalite in its own
 * process, the same kind of store the local relay uses (BASELINE_TENANT_STORE
 * =memory keeps the secrets in a Map instead, a lower bound no real app
 * reaches). What it lacks by design is what the relay adds: streaming instead
 * of buffering, tickets bound to declared files, once-only uploads, retries
 * and look-ups after ambiguous failures.
 *
 * Run as a process: `tsx bench/baselines/express-multer-relay.ts` with
 * BASELINE_TENANTS='[{"clientKey","sharedSecret","baseUrl"}]' and PORT (0 =
 * any); it prints `Baseline listening on <url>` and stops on SIGTERM or when
 * its stdin closes.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import express, { type Request, type Response } from 'express';
import multer from 'multer';
import FormData from 'form-data';
import { SymmetricAlgorithm, createQueryStringHash, decodeSymmetric, encodeSymmetric, fromMethodAndUrl } from 'atlassian-jwt';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { startDynalite } from '../../functions/src/local/dynamodb-local';
import { muteSdkNodeVersionWarning } from '../../functions/src/local/quiet';

export interface BaselineTenant {
  clientKey: string;
  sharedSecret: string;
  /** The site's base URL with its context path, e.g. https://x.atlassian.net/wiki. */
  baseUrl: string;
}

/** Where the app keeps its tenants' install records. */
export interface BaselineTenantStore {
  get(clientKey: string): Promise<BaselineTenant | undefined>;
  close(): Promise<void>;
}

/** The secrets in a Map: no store round trip at all. */
export function memoryTenantStore(tenants: readonly BaselineTenant[]): BaselineTenantStore {
  const byKey = new Map(tenants.map((tenant) => [tenant.clientKey, tenant]));
  return { get: async (clientKey) => byKey.get(clientKey), close: async () => undefined };
}

/** The install records in a DynamoDB table (dynalite in this process), read once per request. */
export async function dynamoTenantStore(tenants: readonly BaselineTenant[]): Promise<BaselineTenantStore> {
  const server = await startDynalite();
  const client = DynamoDBDocumentClient.from(
    new DynamoDBClient({ endpoint: server.endpoint, region: 'local', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
  );
  const TableName = 'baseline-tenants';
  await client.send(
    new CreateTableCommand({
      TableName,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'clientKey', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'clientKey', KeyType: 'HASH' }],
    }),
  );
  for (const tenant of tenants) await client.send(new PutCommand({ TableName, Item: { ...tenant } }));
  return {
    async get(clientKey) {
      const { Item } = await client.send(new GetCommand({ TableName, Key: { clientKey } }));
      return Item as BaselineTenant | undefined;
    },
    async close() {
      client.destroy();
      await server.close();
    },
  };
}

export interface BaselineOptions {
  appKey: string;
  tenants: BaselineTenantStore;
  /** @default 104857600 (the relay's MAX_FILE_BYTES default) */
  maxFileBytes?: number;
}

interface Attachment {
  id: string;
  title: string;
  fileSize: number;
}

/** Verifies `Authorization: JWT <context token>` the way Connect apps usually do (atlassian-jwt, HS256). */
async function authenticate(req: Request, tenants: BaselineTenantStore): Promise<{ tenant: BaselineTenant; accountId: string } | undefined> {
  const match = /^JWT (\S+)$/.exec(req.headers.authorization ?? '');
  if (!match) return undefined;
  try {
    const unverified = JSON.parse(Buffer.from(match[1].split('.')[1] ?? '', 'base64url').toString('utf8')) as { iss?: string };
    const tenant = unverified.iss ? await tenants.get(unverified.iss) : undefined;
    if (!tenant) return undefined;
    const claims = decodeSymmetric(match[1], tenant.sharedSecret, SymmetricAlgorithm.HS256) as { exp?: number; sub?: string };
    if (typeof claims.exp !== 'number' || claims.exp < Date.now() / 1000 || !claims.sub) return undefined;
    return { tenant, accountId: claims.sub };
  } catch {
    return undefined;
  }
}

/** Re-posts one buffered file to Confluence with form-data, as the app. */
function postToConfluence(appKey: string, tenant: BaselineTenant, pageId: string, file: Express.Multer.File): Promise<Attachment> {
  const url = `${tenant.baseUrl}/rest/api/content/${encodeURIComponent(pageId)}/child/attachment`;
  const iat = Math.floor(Date.now() / 1000);
  const jwt = encodeSymmetric(
    { iss: appKey, iat, exp: iat + 180, qsh: createQueryStringHash(fromMethodAndUrl('POST', url), false, tenant.baseUrl) },
    tenant.sharedSecret,
    SymmetricAlgorithm.HS256,
  );
  const form = new FormData();
  form.append('minorEdit', 'true');
  form.append('file', file.buffer, { filename: file.originalname, contentType: file.mimetype, knownLength: file.size });
  return new Promise((resolve, reject) => {
    const request = (url.startsWith('https:') ? https : http).request(url, {
      method: 'POST',
      headers: { ...form.getHeaders(), 'content-length': String(form.getLengthSync()), authorization: `JWT ${jwt}`, 'x-atlassian-token': 'no-check' },
    });
    request.once('error', reject);
    request.once('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.once('error', reject);
      response.once('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (response.statusCode !== 200) return reject(Object.assign(new Error(`Confluence answered ${response.statusCode}`), { status: response.statusCode, text }));
        const result = (JSON.parse(text) as { results: Array<{ id: string; title: string; extensions: { fileSize: number } }> }).results[0];
        resolve({ id: result.id, title: result.title, fileSize: Number(result.extensions.fileSize) });
      });
    });
    form.pipe(request);
  });
}

/** The baseline app: `POST /upload?pageId=<id>` with `file` parts, `GET /health`. */
export function createBaselineApp(options: BaselineOptions): express.Express {
  const { tenants } = options;
  const upload = multer({ storage: multer.memoryStorage(), limits: { fileSize: options.maxFileBytes ?? 104_857_600, files: 20 } });
  const app = express();
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.post(
    '/upload',
    async (req: Request, res: Response, next) => {
      const auth = await authenticate(req, tenants);
      if (!auth) {
        res.status(401).json({ error: { code: 'unauthorized', message: 'Missing or invalid credentials.' } });
        return;
      }
      res.locals.auth = auth;
      next();
    },
    upload.array('file'),
    async (req: Request, res: Response) => {
      const { tenant } = res.locals.auth as { tenant: BaselineTenant };
      const pageId = String(req.query.pageId ?? '');
      const files = (req.files as Express.Multer.File[] | undefined) ?? [];
      if (!/^\d+$/.test(pageId) || files.length === 0) {
        res.status(400).json({ error: { code: 'bad_request', message: 'pageId and at least one file are required.' } });
        return;
      }
      try {
        const attachments: Attachment[] = [];
        for (const file of files) attachments.push(await postToConfluence(options.appKey, tenant, pageId, file));
        res.json({ attachments });
      } catch (error) {
        res.status(502).json({ error: { code: 'upstream_error', message: (error as Error).message } });
      }
    },
  );
  return app;
}

async function main(): Promise<void> {
  muteSdkNodeVersionWarning();
  const records = JSON.parse(process.env.BASELINE_TENANTS ?? '[]') as BaselineTenant[];
  const tenants = process.env.BASELINE_TENANT_STORE === 'memory' ? memoryTenantStore(records) : await dynamoTenantStore(records);
  const app = createBaselineApp({ appKey: process.env.APP_KEY ?? 'confluence-upload-relay', tenants });
  const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  process.stdout.write(`Baseline listening on http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
  const stop = () => server.close(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
}

if (require.main === module) {
  main().catch((error: Error) => {
    process.stderr.write(`Baseline failed to start: ${error.message}\n`);
    process.exit(1);
  });
}
