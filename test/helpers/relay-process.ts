import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

export interface RelayProcess {
  url: string;
  /** Everything the relay wrote to stdout and stderr so far (its logs). */
  output(): string;
  /** Parsed JSON log lines. */
  logLines(): Array<Record<string, unknown>>;
  stop(): Promise<number | null>;
}

/**
 * Starts `npm run relay`'s entry point (tsx functions/src/local/relay.ts) as a
 * child process on a free port, with the given environment, and waits until it
 * answers `GET /health`.
 */
export async function startRelayProcess(env: Record<string, string>): Promise<RelayProcess> {
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'relay-bundles-'));
  const child: ChildProcess = spawn(process.execPath, [path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'functions/src/local/relay.ts'], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', LOCAL_BUNDLE_DIR: bundleDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${output}`)), 30_000);
    const onData = () => {
      const match = /Relay listening on (\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', onData);
    exited.then((code) => reject(new Error(`relay exited with ${code}:\n${output}`)));
  });
  const health = await fetch(`${url}/health`);
  if (health.status !== 200) throw new Error(`relay unhealthy: ${health.status}`);

  return {
    url,
    output: () => output,
    logLines: () =>
      output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      rmSync(bundleDir, { recursive: true, force: true });
      return code;
    },
  };
}
