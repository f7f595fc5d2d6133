import { httpHandler } from '../core/handler';
import { header, json } from '../core/http';
import { uploadAttachment } from '../confluence/client';
import { relayDirectUpload } from '../uploads/direct-upload';
import { bodyStream } from '../uploads/multipart';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** Claims outlive any invocation: API Gateway gives up after 30 s. */
const LEASE_SECONDS = 120;

/** `POST /uploads`: the multipart body streamed into Confluence, file by file. */
export const handler = httpHandler('uploads', async (event, log) => {
  const outcome = await relayDirectUpload(
    {
      authorization: header(event, 'authorization'),
      contentType: header(event, 'content-type'),
      body: () => bodyStream(event.body, event.isBase64Encoded),
    },
    { ...deps, targetFor: deps.appTarget, upload: uploadAttachment, leaseSeconds: LEASE_SECONDS },
  );
  log.tenant = outcome.tenantId;
  log.bytes = outcome.bytesRelayed;
  log.files = outcome.attachments.length;
  if (deps.config.logFileNames) log.fileNames = outcome.attachments.map((a) => a.name);
  return json(200, { attachments: outcome.attachments });
});
