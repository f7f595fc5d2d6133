/**
 * Memory of the usual vendor relay (bench:baseline): in this fresh process,
 * the Express + multer + form-data server of express-multer-relay.ts serves
 * uploads sent by another process (upload-client.ts), and RSS is sampled every
 * millisecond as bench/direct-memory.ts does for the relay (its tenant store,
 * dynalite, runs in this process as the relay worker's does). A 1 KiB upload
 * warms the paths first; then one measurement (BENCH_MODE): `single` (one
 * 4 MiB upload) or `concurrent` (20 at once). Prints {"baseline": {...}}.
 */
import type { AddressInfo } from 'node:net';
import { SymmetricAlgorithm, encodeSymmetric } from 'atlassian-jwt';
import { createBaselineApp, dynamoTenantStore } from './express-multer-relay';
import { muteSdkNodeVersionWarning } from '../../functions/src/local/quiet';

muteSdkNodeVersionWarning();
import { sampleRss, startStandInChild, startUploadClient, type MemorySample } from './memory';

const MiB = 1024 * 1024;
const FILE_BYTES = 4 * MiB;
const COUNT = process.env.BENCH_MODE === 'concurrent' ? 20 : 1;

async function main(): Promise<void> {
  const standIn = await startStandInChild(12_500_000);
  const client = startUploadClient();
  const { site } = standIn;
  const tenants = await dynamoTenantStore([{ clientKey: site.clientKey, sharedSecret: site.sharedSecret, baseUrl: site.baseUrl }]);
  const app = createBaselineApp({ appKey: 'confluence-upload-relay', tenants });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/upload?pageId=1001`;
  const headers = () => {
    const iat = Math.floor(Date.now() / 1000);
    const token = encodeSymmetric({ iss: site.clientKey, sub: 'bench-user', iat, exp: iat + 300, qsh: 'context-qsh' }, site.sharedSecret, SymmetricAlgorithm.HS256);
    return { authorization: `JWT ${token}` };
  };
  let counter = 0;
  const upload = async (count: number, size: number): Promise<MemorySample> => {
    counter += 1;
    let statuses: number[] = [];
    const sample = await sampleRss(async () => {
      statuses = await client.send({ url, headers: headers(), count, size, prefix: `baseline-${counter}` });
    });
    if (statuses.some((status) => status !== 200)) throw new Error(`baseline upload failed: ${statuses.join(',')}`);
    return sample;
  };
  try {
    await upload(1, 1024);
    const measured = await upload(COUNT, FILE_BYTES);
    process.stdout.write(`${JSON.stringify({ baseline: { count: COUNT, ...measured } })}\n`);
  } finally {
    client.stop();
    standIn.stop();
    server.close();
    await tenants.close();
  }
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
