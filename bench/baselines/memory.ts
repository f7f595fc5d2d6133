/** Shared by the memory workers: the RSS sampler (bench/rss.ts), the stand-in and the upload client as child processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
export const TSX = path.join(__dirname, '..', '..', 'node_modules', 'tsx', 'dist', 'cli.mjs');

export { sampleRss, type MemorySample } from '../rss';

export interface StandInSite {
  origin: string;
  baseUrl: string;
  clientKey: string;
  sharedSecret: string;
}

/** The Confluence stand-in in a process of its own (bench/stand-in-child.ts), reading uploads at `bytesPerSecond`. */
export async function startStandInChild(bytesPerSecond: number): Promise<{ site: StandInSite; stop(): void }> {
  const child = spawn(process.execPath, [TSX, path.join(__dirname, '..', 'stand-in-child.ts')], {
    env: { ...process.env, BYTES_PER_SECOND: String(bytesPerSecond) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const firstLine = await new Promise<string>((resolve) => readline.createInterface({ input: child.stdout! }).once('line', resolve));
  return { site: JSON.parse(firstLine) as StandInSite, stop: () => child.stdin?.end() };
}

/** bench/baselines/upload-client.ts as a child: sends `count` uploads of `size` bytes at once, resolves their statuses. */
export function startUploadClient(): { send(job: { url: string; headers: Record<string, string>; count: number; size: number; prefix: string }): Promise<number[]>; stop(): void } {
  const child: ChildProcess = spawn(process.execPath, [TSX, path.join(__dirname, 'upload-client.ts')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout! });
  return {
    send(job) {
      const answered = new Promise<number[]>((resolve, reject) =>
        lines.once('line', (line) => {
          const result = JSON.parse(line) as { statuses?: number[]; error?: string };
          if (result.statuses) resolve(result.statuses);
          else reject(new Error(result.error));
        }),
      );
      child.stdin!.write(`${JSON.stringify(job)}\n`);
      return answered;
    },
    stop: () => child.stdin?.end(),
  };
}
