// /v2/_catalog with one tenant holding 100,000 repositories: what another
// tenant's listing costs now that the database pages through what the caller
// may see, against the earlier algorithm (walk every repository, filter by the
// policy) run on the same data in the same process, interleaved.
//
//   node --import tsx bench/catalog.ts [--repos 100000] [--runs 9]
import { parseArgs } from 'node:util';
import { createKiln } from '../src/server/app.js';
import { loadConfig } from '../src/server/config.js';
import { tenantScope } from '../src/auth/tenant.js';
import { format, loadAverage, pairedRatio, printTable, progress, summarize } from './lib/stats.js';
import { runBench, scratchDir } from './lib/proc.js';

const { values } = parseArgs({ options: { repos: { type: 'string', default: '100000' }, runs: { type: 'string', default: '9' } } });
const REPOS = Number(values.repos);
const RUNS = Number(values.runs);

runBench(async () => {
  const loadBefore = loadAverage();
  const dataDir = scratchDir('kiln-bench-catalog');
  // KILN_FSYNC=false: 100,000 link transactions to seed without an fsync each; listings only read.
  const kiln = await createKiln(loadConfig({ listen: '127.0.0.1:0', dataDir, logLevel: 'error' }, { KILN_AUTH: 'token', KILN_FSYNC: 'false' }));
  const url = await kiln.listen();
  try {
    progress(`seeding ${REPOS} repositories of tenant big…`);
    const digest = `sha256:${'cd'.repeat(32)}`;
    const meta = kiln.registry.meta;
    for (let i = 0; i < REPOS; i++) await meta.linkBlob(`big/r${String(i).padStart(6, '0')}`, digest, 1);
    for (const repo of ['small/a', 'small/b', 'small/c', `cache/${tenantScope('small')}`, 'cache/global/base']) await meta.linkBlob(repo, digest, 1);

    const tokens = kiln.auth.tokens;
    const small = (await tokens.createApiKey({ tenant: 'small', ttlSeconds: 3600 })).token;
    const big = (await tokens.createApiKey({ tenant: 'big', ttlSeconds: 3600 })).token;
    const get = async (key: string, query: string) => {
      const t0 = performance.now();
      const res = await fetch(`${url}/v2/_catalog${query}`, { headers: { authorization: `Bearer ${key}` } });
      if (res.status !== 200) throw new Error(`catalog: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
      return (performance.now() - t0) / 1000;
    };
    // The earlier algorithm: every repository in name order, batches of 500, filtered by the policy.
    const decision = await kiln.auth.authorizer.authorize({ authorization: `Bearer ${small}` }, { repo: null, actions: [], catalog: true }, url);
    const timed = async (fn: () => Promise<unknown>) => {
      const t0 = performance.now();
      await fn();
      return (performance.now() - t0) / 1000;
    };
    const walkAll = () => timed(() => kiln.registry.listRepos({}, { all: true }, decision.canPull));
    const pagedCall = () => timed(() => kiln.registry.listRepos({}, decision.visible, decision.canPull));

    const scoped: number[] = [];
    const calls: number[] = [];
    const walked: number[] = [];
    const bigPage: number[] = [];
    for (let run = 0; run <= RUNS; run++) {
      const s = await get(small, '');
      const c = await pagedCall();
      const w = await walkAll();
      const b = await get(big, '?n=100&last=big/r050000');
      if (run === 0) continue; // warm-up
      scoped.push(s);
      calls.push(c);
      walked.push(w);
      bigPage.push(b);
      progress(`run ${run}: small tenant GET ${(s * 1000).toFixed(2)} ms (listing ${(c * 1000).toFixed(3)} ms), walk-all ${(w * 1000).toFixed(1)} ms, big tenant page ${(b * 1000).toFixed(2)} ms`);
    }
    const ms = (xs: number[]) => format(summarize(xs.map((x) => x * 1000)), 3);
    console.log(`\n${REPOS.toLocaleString('en')} repositories of tenant big; load average ${loadBefore} → ${loadAverage()}\n`);
    printTable(
      ['listing', 'Kiln (paged by visibility)', 'walk all + filter', 'ratio'],
      [
        ["tenant small's catalog (5 repos): the listing alone", `${ms(calls)} ms`, `${ms(walked)} ms`, format(pairedRatio(calls, walked), 4)],
        ["tenant small's catalog: GET /v2/_catalog (token check, HTTP)", `${ms(scoped)} ms`, '—', '—'],
        ["tenant big's page n=100 in the middle", `${ms(bigPage)} ms`, '—', '—'],
      ],
    );
  } finally {
    await kiln.close();
  }
});
