/**
 * Types of `editor-assets.js`, which web/build.ts generates before every
 * bundling of the handlers (local runtime and CDK alike) and git ignores.
 */
export interface EditorAsset {
  /** File name under `/editor/`, content-hashed. */
  file: string;
  contentType: string;
  body: string;
}

export declare const EDITOR_ASSETS: { script: EditorAsset; style: EditorAsset };
