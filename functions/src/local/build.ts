import { build, type BuildOptions } from 'esbuild';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { BUNDLE_SETTINGS, PROJECT_ROOT, handlerEntry, prepareHandlerSources } from '../../../infra/lib/bundling';
import { ALL_HANDLERS } from '../routes';

export const DEFAULT_OUT_DIR = path.join(PROJECT_ROOT, 'dist', 'functions');

/** esbuild options for one handler's bundle: the CDK stack's settings (infra/lib/bundling.ts). */
export function handlerBuildOptions(handler: string): BuildOptions {
  return {
    entryPoints: [handlerEntry(handler)],
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
  };
}

/**
 * Builds every handler into `<outDir>/<handler>/index.js` with the same esbuild
 * settings the CDK stack uses, and returns the bundle paths by handler name.
 */
export async function buildHandlers(outDir: string = DEFAULT_OUT_DIR): Promise<Record<string, string>> {
  const bundles: Record<string, string> = {};
  await Promise.all(
    ALL_HANDLERS.map(async (handler) => {
      bundles[handler] = await buildHandler(handler, outDir);
    }),
  );
  return bundles;
}

/** Builds one handler into `<outDir>/<handler>/index.js` (generated sources first) and returns the path. */
export async function buildHandler(handler: string, outDir: string = DEFAULT_OUT_DIR): Promise<string> {
  const outfile = path.join(outDir, handler, 'index.js');
  mkdirSync(path.dirname(outfile), { recursive: true });
  prepareHandlerSources(handler);
  await build({ ...handlerBuildOptions(handler), outfile });
  return outfile;
}
