// Medians, paired ratios and the printed table. Figures are written
// "median (min–max)", as in BASELINES.
import { loadavg } from 'node:os';

export interface Summary {
  median: number;
  min: number;
  max: number;
}

export function summarize(xs: number[]): Summary {
  if (xs.length === 0) return { median: NaN, min: NaN, max: NaN };
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

/**
 * Ratio candidate/anchor of each interleaved pair, summarized. On a noisy
 * machine neighbouring runs share the same weather, so the median of the
 * pair ratios is steadier than the ratio of the two medians.
 */
export function pairedRatio(candidate: number[], anchor: number[]): Summary {
  const n = Math.min(candidate.length, anchor.length);
  return summarize(Array.from({ length: n }, (_, i) => candidate[i]! / anchor[i]!));
}

export function format(s: Summary, digits: number): string {
  if (Number.isNaN(s.median)) return '—';
  const f = (x: number) => x.toFixed(digits);
  return s.min === s.max ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

/** Plain-text table with aligned columns (also valid Markdown). */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(headers));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

/** `≤ 0.9` or `≥ 1.2` and whether the figure meets it. */
export interface Target {
  op: '<=' | '>=';
  limit: number;
}

export function verdict(value: number, target: Target | undefined): string {
  if (!target) return '';
  if (Number.isNaN(value)) return `${target.op === '<=' ? '≤' : '≥'} ${target.limit.toFixed(1)}`;
  // Judge the ratio as printed (2 decimals), so "1.00" never reads as a miss of "≤ 1.0".
  const shown = Math.round(value * 100) / 100;
  const ok = target.op === '<=' ? shown <= target.limit : shown >= target.limit;
  return `${target.op === '<=' ? '≤' : '≥'} ${target.limit.toFixed(1)} ${ok ? 'met' : 'MISSED'}`;
}

/**
 * The 1-minute load average, printed with the results. The bench itself keeps
 * one to two cores busy; clearly more than 2 means other work shared the
 * machine, and then even the paired ratios get wide (compare with a
 * `bench/registry.ts --self-check` run made at the same time).
 */
export function loadAverage(): string {
  return loadavg()[0]!.toFixed(1);
}

export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}
