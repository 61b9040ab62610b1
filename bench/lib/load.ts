// Small-request load with the tools BASELINES used: hey for HEAD (wrk 4.1.0
// completes no HEAD requests: it waits for a body after Content-Length) and wrk
// for GET.
import { run } from './proc.js';

export interface LoadResult {
  requestsPerSecond: number;
  p99Ms: number;
  /** responses that were not 200, plus transport errors */
  failures: number;
}

function number(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  if (!m) throw new Error(`could not find ${what} in:\n${text}`);
  return Number(m[1]);
}

/** `hey -c C -z Ds [-m HEAD] [-H h] URL` */
export async function hey(url: string, opts: { connections: number; seconds: number; method?: string; header?: string }): Promise<LoadResult> {
  const args = ['-c', String(opts.connections), '-z', `${opts.seconds}s`, '-m', opts.method ?? 'GET'];
  if (opts.header) args.push('-H', opts.header);
  const { stdout } = await run('hey', [...args, url]);
  let failures = 0;
  for (const m of stdout.matchAll(/\[(\d+)\]\s+(\d+) (responses|errors)/g)) {
    if (m[1] !== '200' || m[3] === 'errors') failures += Number(m[2]);
  }
  return {
    requestsPerSecond: number(stdout, /Requests\/sec:\s+([\d.]+)/, 'Requests/sec'),
    p99Ms: number(stdout, /99%+ in ([\d.]+) secs/, 'p99') * 1000,
    failures,
  };
}

const WRK_UNITS_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/**
 * `wrk -t2 -cC -dDs --latency [-H h] URL`. With `until`, wrk is stopped (SIGINT, after which it
 * prints its figures for the time it ran) when that promise settles, or after `seconds` at the latest.
 */
export async function wrk(url: string, opts: { connections: number; seconds: number; header?: string; until?: Promise<unknown> }): Promise<LoadResult> {
  const args = ['-t2', `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency'];
  if (opts.header) args.push('-H', opts.header);
  const { stdout } = await run('wrk', [...args, url], opts.until ? { interrupt: opts.until } : {});
  const p99 = /^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(stdout);
  if (!p99) throw new Error(`could not find p99 in:\n${stdout}`);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  return {
    requestsPerSecond: number(stdout, /Requests\/sec:\s+([\d.]+)/, 'Requests/sec'),
    p99Ms: Number(p99[1]) * WRK_UNITS_MS[p99[2]!]!,
    failures: (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0),
  };
}
