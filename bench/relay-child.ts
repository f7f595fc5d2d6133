/**
 * `npm run relay` as a child process for the load benchmark, like
 * test/helpers/relay-process.ts, but it also finds the process that actually
 * serves (tsx runs the script in a child of its own), whose VmRSS the
 * benchmark reads from /proc.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');

export interface RelayChild {
  url: string;
  /** The pid of the node process running functions/src/local/relay.ts. */
  pid: number;
  stop(): Promise<void>;
}

/** Direct children of `pid`, from /proc/<n>/stat. */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** VmRSS of a process in bytes (Linux). */
export function rssOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

export async function startRelayChild(env: Record<string, string>): Promise<RelayChild> {
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'relay-bundles-'));
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'functions/src/local/relay.ts'], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', LOCAL_BUNDLE_DIR: bundleDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${output}`)), 60_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (output.length < 100_000) output += text;
      const match = /Relay listening on (\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`relay exited with ${code}:\n${output}`)));
  });
  // Keep draining the relay's log lines without holding them.
  child.stdout?.removeAllListeners('data');
  child.stdout?.resume();
  child.stderr?.removeAllListeners('data');
  child.stderr?.resume();
  const server = childrenOf(child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('relay.ts')) ?? child.pid!;
  return {
    url,
    pid: server,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(bundleDir, { recursive: true, force: true });
    },
  };
}
