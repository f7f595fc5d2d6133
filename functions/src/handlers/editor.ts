import { EDITOR_ASSETS } from '../../../web/generated/editor-assets';
import { getConfig } from '../core/config';
import { AppError } from '../core/errors';
import { httpHandler } from '../core/handler';
import { header } from '../core/http';
import { editorAssetResponses, editorPage, loadEditorConfig } from '../editor/editor-page';

// Rendered once per container: the page depends only on the deployment's configuration.
const page = editorPage(getConfig(), loadEditorConfig(), EDITOR_ASSETS);
const assets = editorAssetResponses(EDITOR_ASSETS);

/** `GET /editor` (the iframe page) and `GET /editor/{proxy+}` (its script and stylesheet). */
export const handler = httpHandler('editor', async (event) => {
  const file = event.pathParameters?.proxy;
  if (file === undefined) return page;
  const asset = assets.get(file);
  if (!asset) throw new AppError(404, 'not_found', 'No such file.');
  return asset(/\bgzip\b/.test(header(event, 'accept-encoding') ?? ''));
});
