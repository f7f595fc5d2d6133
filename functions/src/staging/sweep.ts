import type { StagingBucket } from './s3';

/** Staged objects older than this are reported as left behind (the stack alarms on them). */
export const LEFT_BEHIND_AGE_MS = 60 * 60 * 1000;

/**
 * How long a staged object can legitimately wait: the ticket's lifetime (the
 * browser may complete until it expires) plus the staged relay's 15 minutes
 * and its one minute of queueing, plus a margin.
 */
export function maxStagedAgeMs(ticketTtlSeconds: number): number {
  return (ticketTtlSeconds + 16 * 60 + 4 * 60) * 1000;
}

export interface SweepOutcome {
  /** Objects older than an hour that were found (before deletion). */
  leftBehind: number;
  /** Objects deleted because no ticket can still complete them. */
  deleted: number;
  /** Objects seen in all. */
  seen: number;
}

/**
 * Deletes staged objects that no live ticket can complete any more (a browser
 * that uploaded and never called /uploads/complete), so nothing waits for the
 * bucket's daily lifecycle run, and counts those over an hour old for the
 * "left behind" alarm.
 */
export async function sweepStaging(staging: StagingBucket, options: { nowMs: number; maxAgeMs: number }): Promise<SweepOutcome> {
  const outcome: SweepOutcome = { leftBehind: 0, deleted: 0, seen: 0 };
  for await (const object of staging.list()) {
    outcome.seen += 1;
    const ageMs = options.nowMs - object.lastModifiedMs;
    if (ageMs > LEFT_BEHIND_AGE_MS) outcome.leftBehind += 1;
    if (ageMs > options.maxAgeMs) {
      await staging.delete(object.key);
      outcome.deleted += 1;
    }
  }
  return outcome;
}
