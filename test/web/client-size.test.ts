import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { WEB_ROOT, bundleForBrowser, buildEditorAssets } from '../../web/build';

/**
 * Size budget of the client library as app developers ship it: the ES module
 * bundle of web/client, minified by esbuild, then gzipped.
 */
const BUDGET_BYTES = 15 * 1024;

const minGzip = (code: string) => ({ minified: Buffer.byteLength(code), gzipped: gzipSync(code, { level: 9 }).length });

describe('client library size', () => {
  it(`is at most ${BUDGET_BYTES} bytes minified and gzipped`, () => {
    const size = minGzip(bundleForBrowser(path.join(WEB_ROOT, 'client', 'index.ts'), 'esm'));
    expect(size.gzipped).toBeLessThanOrEqual(BUDGET_BYTES);
    // The number the README quotes; fails when it drifts far, so the README stays true.
    expect(size.gzipped).toBeLessThan(5 * 1024);
  });

  it('the whole editor page script (library included) stays small too', () => {
    const { script, style } = buildEditorAssets();
    expect(minGzip(script.body).gzipped).toBeLessThanOrEqual(BUDGET_BYTES);
    expect(minGzip(style.body).gzipped).toBeLessThan(3 * 1024);
  });
});
