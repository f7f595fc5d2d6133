import path from 'node:path';
import { writeEditorAssetsModule } from '../../web/build';

/**
 * The esbuild settings of every Lambda bundle. The CDK stack hands them to
 * NodejsFunction and the local runtime builds with them too, so what runs
 * locally and in tests is the code that `cdk deploy` ships.
 */
export const BUNDLE_SETTINGS = {
  /** Lambda runs nodejs22.x; node20 syntax also runs on this machine's Node 20. */
  target: 'node20',
  platform: 'node' as const,
  format: 'cjs' as const,
  minify: true,
  sourceMap: true,
  /** The SDK is bundled (pinned, and faster to load than the runtime's copy). */
  externalModules: [] as string[],
  /**
   * Errors are recognised by their `name` property, which the SDK and our own
   * error classes set explicitly, so minified class names are fine.
   */
  keepNames: false,
  /** Prefer the ES module builds (the AWS SDK ships both) so esbuild can drop unused code. */
  mainFields: ['module', 'main'],
};

export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');

export function handlerEntry(handler: string): string {
  return path.join(PROJECT_ROOT, 'functions', 'src', 'handlers', `${handler}.ts`);
}

/**
 * Generates the sources a handler imports that are built, not written: the
 * editor's browser assets (web/build.ts). Called right before bundling by
 * both the local runtime and the CDK stack, so both bundle the same thing.
 */
export function prepareHandlerSources(handler: string): void {
  if (handler === 'editor') writeEditorAssetsModule();
}
