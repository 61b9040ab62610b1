// How jobs are run: how many worker processes `kiln serve` starts, the lease
// a worker holds on its job, and how often a job may take its worker down
// before it is given up. Pure.
import os from 'node:os';
import { parseDuration } from '../auth/duration.js';

export interface JobSettings {
  /** Worker processes `kiln serve` starts (KILN_WORKERS, `--workers`); 0: the API only. */
  workers: number;
  /** A claimed job is held this long without a renewal (KILN_JOB_LEASE). */
  leaseMs: number;
  /** A job whose worker died this many times is failed (KILN_JOB_MAX_ATTEMPTS). */
  maxAttempts: number;
  /** How often an idle worker looks for work when nothing wakes it. */
  pollMs: number;
}

/** Half the cores, at least one: the other half keeps serving the registry. */
export function defaultWorkers(cores: number = os.availableParallelism()): number {
  return Math.max(1, Math.floor(cores / 2));
}

export function loadJobSettings(env: NodeJS.ProcessEnv = process.env, flags: { workers?: string } = {}): JobSettings {
  return {
    workers: wholeNumber(flags.workers ?? env.KILN_WORKERS, defaultWorkers(), flags.workers !== undefined ? '--workers' : 'KILN_WORKERS', 0),
    leaseMs: seconds(env.KILN_JOB_LEASE, 15, 'KILN_JOB_LEASE') * 1000,
    maxAttempts: wholeNumber(env.KILN_JOB_MAX_ATTEMPTS, 3, 'KILN_JOB_MAX_ATTEMPTS', 1),
    pollMs: 1000,
  };
}

/** Renewals come three times per lease, so one late renewal does not lose the job. */
export function renewIntervalMs(settings: Pick<JobSettings, 'leaseMs'>): number {
  return Math.max(100, Math.floor(settings.leaseMs / 3));
}

/** Wait before a job whose worker died is offered again: 1 s, 2 s, 4 s, … at most a minute. */
export function retryBackoffMs(attempts: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(0, attempts - 1));
}

function wholeNumber(raw: string | undefined, fallback: number, name: string, min: number): number {
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be a whole number of at least ${min}, got "${raw}"`);
  return n;
}

function seconds(raw: string | undefined, fallback: number, name: string): number {
  if (raw === undefined || raw.trim() === '') return fallback;
  if (/^\d+$/.test(raw.trim())) return Number(raw);
  try {
    return parseDuration(raw);
  } catch (err) {
    throw new Error(`${name}: ${(err as Error).message}`);
  }
}
