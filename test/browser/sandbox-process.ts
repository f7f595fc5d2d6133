import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

export interface SandboxProcess {
  /** The page `npm start` prints to open. */
  url: string;
  relayUrl: string;
  /** The Confluence stand-in's origin (`http://127.0.0.1:<port>`). */
  standInOrigin: string;
  /** How long `npm start` took until it printed the URL. */
  startupMs: number;
  output(): string;
  stop(): Promise<number | null>;
}

/**
 * Starts `npm start`'s entry point (tsx functions/src/local/sandbox.ts) as a
 * child process on free ports (PORT=0) and waits for the URL it prints.
 */
export async function startSandboxProcess(env: Record<string, string> = {}): Promise<SandboxProcess> {
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'sandbox-bundles-'));
  const started = Date.now();
  const child: ChildProcess = spawn(process.execPath, [path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'functions/src/local/sandbox.ts'], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', LOCAL_BUNDLE_DIR: bundleDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    const code = await exited;
    rmSync(bundleDir, { recursive: true, force: true });
    return code;
  };

  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the sandbox did not start:\n${output}`)), 45_000);
      child.stdout?.on('data', () => {
        const match = /Sandbox ready: open (\S+)/.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      void exited.then((code) => reject(new Error(`the sandbox exited with ${code}:\n${output}`)));
    });
    const relayUrl = /Relay listening on (\S+)/.exec(output)?.[1] ?? '';
    return { url, relayUrl, standInOrigin: new URL(url).origin, startupMs: Date.now() - started, output: () => output, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
