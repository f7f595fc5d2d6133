import { httpHandler } from '../core/handler';
import { json } from '../core/http';
import { AppError } from '../core/errors';
import { buildDeps } from '../deps';

const deps = buildDeps();

/** `GET /health`: 200 when the relay's store answers, 503 otherwise. */
export const handler = httpHandler('health', async () => {
  try {
    await deps.tenants.get('__health_probe__');
  } catch (cause) {
    throw new AppError(503, 'unavailable', 'The relay cannot reach its store.', { cause, headers: { 'retry-after': '5' } });
  }
  return json(200, { status: 'ok' });
});
