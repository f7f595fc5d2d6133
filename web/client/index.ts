/**
 * Browser client of the Confluence upload relay: `createUploader` for a
 * Connect iframe (context JWT from `AP.context.getToken()`) or a Forge
 * Custom UI (`requestTicket` through `invokeRemote`). ESM, no dependencies.
 */
export { createUploader } from './uploader';
export { UploadError, isRetryable, messageFor } from './errors';
export type { XhrLike } from './http';
export type {
  Attachment,
  FileDeclaration,
  TicketRequest,
  TicketResponse,
  UploadEntry,
  UploadState,
  UploadTask,
  Uploader,
  UploaderEvents,
  UploaderOptions,
} from './types';
