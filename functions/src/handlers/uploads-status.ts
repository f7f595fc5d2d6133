import { httpHandler } from '../core/handler';
import { header, json } from '../core/http';
import { readUploadStatus, failureError } from '../uploads/staged-upload';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** `GET /uploads/status?name=`: progress of a staged upload being relayed. */
export const handler = httpHandler('uploads-status', async (event, log) => {
  const { tenantId, answer } = await readUploadStatus(
    { authorization: header(event, 'authorization'), name: event.queryStringParameters?.name },
    { ...deps, relayBaseUrl: deps.config.relayBaseUrl },
  );
  log.tenant = tenantId;
  if (answer.status === 'failed') throw failureError(answer.failure);
  return json(answer.status, answer.body);
});
