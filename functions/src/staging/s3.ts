import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { createPresignedPost } from '@aws-sdk/s3-presigned-post';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { RelayConfig } from '../core/config';
import { AppError } from '../core/errors';
import { isTransientAwsError } from '../store/dynamo';

/**
 * The staging bucket: where files too big for one Lambda request wait, for
 * the shortest possible time, between the browser and Confluence. Objects live
 * under `staging/`, keyed by tenant, ticket and 128 random bits; file names
 * never appear in keys.
 */
export const STAGING_PREFIX = 'staging/';

export interface StagedPost {
  url: string;
  fields: Record<string, string>;
}

export interface StagedObjectInfo {
  size: number;
  contentType?: string;
}

export interface StagingBucket {
  /** A fresh, unguessable key for one declared file of one ticket. */
  newKey(tenantId: string, ticketHash: string): string;
  /** A presigned POST that only accepts exactly this key, size and type, encrypted, until `expiresAt`. */
  presignPost(key: string, size: number, type: string, expiresInSeconds: number): Promise<StagedPost>;
  head(key: string): Promise<StagedObjectInfo | undefined>;
  open(key: string): Promise<Readable>;
  delete(key: string): Promise<void>;
  /** Every staged object with its age, a page at a time. */
  list(): AsyncGenerator<{ key: string; lastModifiedMs: number }>;
}

const clients = new Map<number, S3Client>();

/** Per-attempt socket timeout when the configuration does not say (API_CALL_TIMEOUT_MS's default). */
const DEFAULT_S3_TIMEOUT_MS = 5_000;

type S3Config = Pick<RelayConfig, 's3Endpoint'> & Partial<Pick<RelayConfig, 'apiCallTimeoutMs' | 'upstreamTimeoutMs'>>;

/**
 * The process-wide S3 clients, by socket timeout. A connection that makes no
 * progress for that long is dropped (the SDK has no timeout of its own, and a
 * hung GET would hold the staged relay for its whole 15 minutes); what still
 * fails after the SDK's retries leaves as `503 staging_unavailable`.
 */
function s3Client(config: S3Config, socketTimeoutMs: number): S3Client {
  const cached = clients.get(socketTimeoutMs);
  if (cached) return cached;
  const timeoutMs = config.apiCallTimeoutMs ?? DEFAULT_S3_TIMEOUT_MS;
  const client = new S3Client({
    ...(config.s3Endpoint ? { endpoint: config.s3Endpoint, forcePathStyle: true } : {}),
    // Default checksums would sign an empty-body CRC into presigned requests and
    // send streams aws-chunked; neither is wanted here (aws.md §4, §7).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: timeoutMs, socketTimeout: socketTimeoutMs },
  });
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        if (error instanceof AppError || !isTransientAwsError(error)) throw error;
        throw new AppError(503, 'staging_unavailable', 'The staging bucket cannot be reached; try again later.', {
          cause: error,
          headers: { 'retry-after': '5' },
          reason: `staging_${(error as Error).name}`,
        });
      }
    },
    { step: 'initialize', name: 'stagingUnavailable' },
  );
  clients.set(socketTimeoutMs, client);
  return client;
}

function isNotFound(error: unknown): boolean {
  const name = (error as { name?: string } | null)?.name;
  const status = (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  return name === 'NotFound' || name === 'NoSuchKey' || status === 404;
}

export function s3StagingBucket(config: S3Config, bucket: string): StagingBucket {
  const client = s3Client(config, config.apiCallTimeoutMs ?? DEFAULT_S3_TIMEOUT_MS);
  // The staged relay reads an object at Confluence's pace: while Confluence
  // stalls, the GET's socket idles too, which is no fault of S3's. It may idle
  // as long as an upload may stall (UPSTREAM_TIMEOUT_MS), not as long as a call may take.
  const streaming = s3Client(config, Math.max(config.upstreamTimeoutMs ?? 0, config.apiCallTimeoutMs ?? DEFAULT_S3_TIMEOUT_MS));
  return {
    newKey(tenantId, ticketHash) {
      const tenant = createHash('sha256').update(tenantId).digest('hex').slice(0, 16);
      return `${STAGING_PREFIX}${tenant}/${ticketHash.slice(0, 32)}/${randomBytes(16).toString('hex')}`;
    },

    async presignPost(key, size, type, expiresInSeconds) {
      const { url, fields } = await createPresignedPost(client, {
        Bucket: bucket,
        Key: key,
        Conditions: [
          ['content-length-range', size, size],
          ['eq', '$Content-Type', type],
          { 'x-amz-server-side-encryption': 'AES256' },
        ],
        Fields: { 'Content-Type': type, 'x-amz-server-side-encryption': 'AES256' },
        Expires: Math.max(1, expiresInSeconds),
      });
      return { url, fields };
    },

    async head(key) {
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { size: head.ContentLength ?? -1, contentType: head.ContentType };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    },

    async open(key) {
      const object = await streaming.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return object.Body as Readable;
    },

    async delete(key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },

    async *list() {
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: STAGING_PREFIX, ContinuationToken: token }));
        for (const object of page.Contents ?? []) {
          if (object.Key) yield { key: object.Key, lastModifiedMs: object.LastModified?.getTime() ?? 0 };
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    },
  };
}
