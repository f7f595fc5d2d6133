import { build } from 'esbuild';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { BUNDLE_SETTINGS, PROJECT_ROOT, handlerEntry } from '../../../infra/lib/bundling';
import { ALL_HANDLERS } from '../routes';

export const DEFAULT_OUT_DIR = path.join(PROJECT_ROOT, 'dist', 'functions');

/**
 * Builds every handler into `<outDir>/<handler>/index.js` with the same esbuild
 * settings the CDK stack uses, and returns the bundle paths by handler name.
 */
export async function buildHandlers(outDir: string = DEFAULT_OUT_DIR): Promise<Record<string, string>> {
  const bundles: Record<string, string> = {};
  await Promise.all(
    ALL_HANDLERS.map(async (handler) => {
      const outfile = path.join(outDir, handler, 'index.js');
      mkdirSync(path.dirname(outfile), { recursive: true });
      await build({
        entryPoints: [handlerEntry(handler)],
        outfile,
        bundle: true,
        platform: BUNDLE_SETTINGS.platform,
        format: BUNDLE_SETTINGS.format,
        target: BUNDLE_SETTINGS.target,
        minify: BUNDLE_SETTINGS.minify,
        sourcemap: BUNDLE_SETTINGS.sourceMap,
        keepNames: BUNDLE_SETTINGS.keepNames,
        external: BUNDLE_SETTINGS.externalModules,
        mainFields: BUNDLE_SETTINGS.mainFields,
        logLevel: 'warning',
      });
      bundles[handler] = outfile;
    }),
  );
  return bundles;
}
