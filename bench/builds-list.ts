// bench/builds-list: what one tenant's page of `GET /api/v1/builds` costs
// when another tenant has 100k builds, against the same page in a database
// that holds only that tenant's builds (the anchor: nobody else's rows to
// skip). Both through SqliteBuildStore.list, interleaved. The old listing
// (read every row, filter by owner in the process) is timed too, for scale.
//
//   node --import tsx bench/builds-list.ts [--builds 100000] [--runs 21]
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openSqlite } from '../src/store/sqlite/db.js';
import { SqliteBuildStore } from '../src/store/sqlite/build-store.js';
import type { NewBuild } from '../src/store/build-store.js';
import { runBench, scratchDir } from './lib/proc.js';
import { format, loadAverage, pairedRatio, printTable, progress, summarize, verdict } from './lib/stats.js';

const { values: opts } = parseArgs({ options: { builds: { type: 'string', default: '100000' }, runs: { type: 'string', default: '21' } } });
const others = Number(opts.builds);
const runs = Number(opts.runs);
const PAGE = 100;
const OWN = 250;

const build = (id: string, tenant: string): NewBuild => ({
  id,
  tenant,
  requestedBy: tenant,
  admin: false,
  globalKey: null,
  buildArgs: {},
  platform: null,
  timeoutSeconds: 600,
  dockerfile: null,
  sourceSha256: `sha256:${'0'.repeat(64)}`,
  baseRefs: [],
  secretIds: [],
});

async function fill(file: string, neighbours: number): Promise<{ store: SqliteBuildStore; close: () => void }> {
  const db = openSqlite(file);
  db.pragma('synchronous = OFF');
  const store = new SqliteBuildStore(db);
  // The small tenant's builds are interleaved with the big one's, the worst case for a scan.
  const every = Math.max(1, Math.floor(neighbours / OWN));
  let own = 0;
  db.exec('BEGIN');
  for (let i = 0; i < neighbours || own < OWN; i++) {
    if (i < neighbours) await store.create(build(`big-${i}`, 'big'));
    if (own < OWN && (i % every === 0 || i >= neighbours)) await store.create(build(`small-${own++}`, 'small'));
  }
  db.exec('COMMIT');
  return { store, close: () => db.close() };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

runBench(async () => {
  const dir = scratchDir('kiln-bench-builds-list');
  progress(`filling: ${others} builds of tenant "big", ${OWN} of tenant "small"`);
  const crowded = await fill(path.join(dir, 'crowded.db'), others);
  const alone = await fill(path.join(dir, 'alone.db'), 0);
  const page = (store: SqliteBuildStore) => store.list({ tenant: 'small', limit: PAGE + 1 });
  const oldWay = async (store: SqliteBuildStore) => (await store.list({ limit: Number.MAX_SAFE_INTEGER })).filter((b) => b.tenant === 'small').slice(0, PAGE);
  const load = loadAverage();
  const kiln: number[] = [];
  const anchor: number[] = [];
  const scan: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const a = await time(() => page(crowded.store));
    const b = await time(() => page(alone.store));
    const c = i % 4 === 0 ? await time(() => oldWay(crowded.store)) : null;
    if (i === 0) continue; // warm-up
    kiln.push(a);
    anchor.push(b);
    if (c !== null) scan.push(c);
    progress(`run ${i}: crowded ${a.toFixed(2)} ms, alone ${b.toFixed(2)} ms${c !== null ? `, old scan ${c.toFixed(0)} ms` : ''}`);
  }
  const ratio = pairedRatio(kiln, anchor);
  console.log(`\nbuilds listing, page of ${PAGE}, load average ${load} → ${loadAverage()}\n`);
  printTable(
    ['figure', 'value', 'ratio to the anchor', 'target'],
    [
      [`tenant page, ${others} other builds in the table`, `${format(summarize(kiln), 2)} ms`, format(ratio, 2), verdict(ratio.median, { op: '<=', limit: 2 })],
      ['tenant page, no other builds (anchor)', `${format(summarize(anchor), 2)} ms`, '1', ''],
      ['old listing: every row read, filtered after', `${format(summarize(scan), 0)} ms`, '', ''],
    ],
  );
  crowded.close();
  alone.close();
});
