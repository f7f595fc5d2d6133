/**
 * The one RSS sampler of the memory benchmarks: two forced GCs and a pause,
 * then RSS every millisecond while `run` runs.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

export interface MemorySample {
  /** RSS after two GCs, before the upload(s) started. */
  baselineBytes: number;
  /** Highest RSS seen while they ran (sampled every millisecond). */
  peakBytes: number;
}

/** Two GCs and a pause, then RSS sampled every millisecond while `run` runs. */
export async function sampleRss(run: () => Promise<void>): Promise<MemorySample> {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 50));
  gc();
  const baselineBytes = process.memoryUsage.rss();
  let peakBytes = baselineBytes;
  const sampler = setInterval(() => {
    peakBytes = Math.max(peakBytes, process.memoryUsage.rss());
  }, 1);
  try {
    await run();
  } finally {
    clearInterval(sampler);
  }
  peakBytes = Math.max(peakBytes, process.memoryUsage.rss());
  return { baselineBytes, peakBytes };
}
