import { httpHandler } from '../core/handler';

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Upload files</title>
<script src="https://connect-cdn.atl-paas.net/all.js" async></script>
</head>
<body>
<main><h1>Upload files</h1><p>The upload editor is being built. Files can already be sent to the relay's <code>/tickets</code> and <code>/uploads</code> routes.</p></main>
</body>
</html>`;

/** `GET /editor`: the editor iframe page (placeholder until the editor lands). */
export const handler = httpHandler('editor', async () => ({
  statusCode: 200,
  headers: {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'self'; script-src 'self' https://connect-cdn.atl-paas.net; frame-ancestors https://*.atlassian.net",
  },
  body: PAGE,
}));
