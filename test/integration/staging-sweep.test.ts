import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3RVER_CREDENTIALS, startS3rver } from '../../functions/src/local/s3-local';
import { s3StagingBucket } from '../../functions/src/staging/s3';
import { LEFT_BEHIND_AGE_MS, maxStagedAgeMs, sweepStaging } from '../../functions/src/staging/sweep';

/** The staging sweeper against s3rver: it deletes what no ticket can complete, and only that. */
const BUCKET = 'sweep-test';
let s3: Awaited<ReturnType<typeof startS3rver>>;
let client: S3Client;

beforeAll(async () => {
  s3 = await startS3rver();
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  process.env.AWS_REGION = 'us-east-1';
  client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS, region: 'us-east-1' });
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
});
afterAll(() => s3.close());

const keys = async () => ((await client.send(new ListObjectsV2Command({ Bucket: BUCKET }))).Contents ?? []).map((o) => o.Key).sort();

it('keeps fresh objects, reports and deletes those no ticket can complete, and never touches other prefixes', async () => {
  for (const key of ['staging/a/b/1', 'staging/a/b/2', 'elsewhere/keep']) {
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: Buffer.from('x') }));
  }
  const staging = s3StagingBucket({ s3Endpoint: s3.endpoint }, BUCKET);
  const maxAgeMs = maxStagedAgeMs(300);

  expect(await sweepStaging(staging, { nowMs: Date.now(), maxAgeMs })).toEqual({ seen: 2, leftBehind: 0, deleted: 0 });
  expect(await keys()).toEqual(['elsewhere/keep', 'staging/a/b/1', 'staging/a/b/2']);

  // Seen from 2 hours later: both staged objects are left behind and can no longer be completed.
  const later = Date.now() + 2 * LEFT_BEHIND_AGE_MS;
  expect(await sweepStaging(staging, { nowMs: later, maxAgeMs })).toEqual({ seen: 2, leftBehind: 2, deleted: 2 });
  expect(await keys()).toEqual(['elsewhere/keep']);
});

it('waits at least for the ticket and the staged relay to end', () => {
  // A 5-minute ticket completed at its last second may relay for 15 minutes after a minute's queue.
  expect(maxStagedAgeMs(300)).toBeGreaterThan((300 + 16 * 60) * 1000);
});
