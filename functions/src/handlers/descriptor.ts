import { buildDescriptor } from '../connect/descriptor';
import { getConfig } from '../core/config';
import { httpHandler } from '../core/handler';
import { json } from '../core/http';

const descriptor = buildDescriptor(getConfig());

/** `GET /atlassian-connect.json` */
export const handler = httpHandler('descriptor', async () => json(200, descriptor, { 'cache-control': 'max-age=60' }));
