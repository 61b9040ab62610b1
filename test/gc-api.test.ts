// POST /api/v1/gc through the server: admins only (401/403 otherwise), dry
// runs, the report and the metrics; cache retention driven by real pushes
// and pulls (the pull times recorded on manifest GET/HEAD by tag).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { GcReport } from '../src/gc/collector.js';
import { startKiln, type TestKiln } from './helpers/kiln.js';
import { RegistryClient } from './helpers/registry.js';

describe('POST /api/v1/gc with auth', () => {
  let server: TestKiln;
  const keys: Record<string, string> = {};
  before(async () => {
    server = await startKiln({ env: { KILN_AUTH: 'token', KILN_GC_INTERVAL: '0' } });
    const { tokens } = server.kiln.auth;
    keys.admin = (await tokens.createApiKey({ admin: true, ttlSeconds: 600 })).token;
    keys.tenant = (await tokens.createApiKey({ tenant: 'acme', ttlSeconds: 600 })).token;
    keys.build = (await tokens.issueBuildToken({ buildId: 'b1', tenant: 'acme', admin: false, globalKey: null, expiresAt: new Date(Date.now() + 600_000) })).token;
  });
  after(async () => {
    await server?.close();
  });

  const gc = (key: string | null, body?: unknown) =>
    fetch(`${server.url}/api/v1/gc`, {
      method: 'POST',
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  it('is for admins: 401 without a key, 403 for tenants and builds', async () => {
    const anonymous = await gc(null);
    assert.equal(anonymous.status, 401, await anonymous.text());
    for (const who of ['tenant', 'build']) {
      const res = await gc(keys[who]!, { dryRun: true });
      assert.equal(res.status, 403, `${who}: ${await res.clone().text()}`);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'DENIED');
      assert.match(body.error.message, /admin/);
    }
  });

  it('runs for an admin, dry or not, and reports; bad bodies are 400', async () => {
    const dry = await gc(keys.admin!, { dryRun: true });
    assert.equal(dry.status, 200);
    const report = (await dry.json()) as GcReport;
    assert.equal(report.dryRun, true);
    assert.equal(report.trigger, 'api');
    assert.equal(report.graceSeconds, 3600);
    assert.deepEqual(Object.keys(report.deleted).sort(), ['blobs', 'buildFiles', 'disks', 'manifests', 'repoLinks', 'repos', 'tags', 'uploads']);
    const real = await gc(keys.admin!);
    assert.equal(real.status, 200);
    assert.equal(((await real.json()) as GcReport).dryRun, false);
    assert.equal((await gc(keys.admin!, { dryRun: 'yes' })).status, 400);
    assert.equal((await gc(keys.admin!, { dryRun: true, extra: 1 })).status, 400);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /kiln_gc_runs_total\{mode="dry_run",trigger="api",result="ok"\} 1/);
    assert.match(metrics, /kiln_gc_runs_total\{mode="sweep",trigger="api",result="ok"\} 1/);
    assert.match(metrics, /kiln_gc_duration_seconds_count\{mode="sweep"\} 1/);
    assert.match(metrics, /kiln_gc_last_run_timestamp_seconds\{mode="sweep"\} \d/);
  });
});

describe('cache retention through the server', () => {
  let server: TestKiln;
  before(async () => {
    server = await startKiln({ env: { KILN_CACHE_MAX_AGE: '1s', KILN_GC_GRACE: '0', KILN_GC_INTERVAL: '0' } });
  });
  after(async () => {
    await server?.close();
  });

  it('untags cache tags neither pushed nor pulled within KILN_CACHE_MAX_AGE, keeps the global cache', async () => {
    const c = new RegistryClient(server.url);
    const stale = await c.pushImage('cache/t1', 'main');
    const pulled = await c.pushImage('cache/t2', 'main');
    const global = await c.pushImage('cache/global/node', 'k1');
    const app = await c.pushImage('team/app', 'v1');
    await new Promise((r) => setTimeout(r, 700));
    // BuildKit resolves a cache import with HEAD, then GETs it.
    assert.equal((await c.fetch('/v2/cache/t2/manifests/main', { method: 'HEAD' })).status, 200);
    await new Promise((r) => setTimeout(r, 700));
    const report = (await (await fetch(`${server.url}/api/v1/gc`, { method: 'POST' })).json()) as GcReport;
    assert.equal(report.cacheMaxAgeSeconds, 1);
    assert.deepEqual(report.items.tags, ['cache/t1:main']);
    assert.equal((await c.getManifest('cache/t1', 'main')).res.status, 404);
    assert.equal((await c.getBlob('cache/t1', stale.layers[0]!.digest)).res.status, 404);
    for (const [repo, tag, pushed] of [['cache/t2', 'main', pulled], ['cache/global/node', 'k1', global], ['team/app', 'v1', app]] as const) {
      assert.ok((await c.getManifest(repo, tag)).bytes.equals(pushed.manifest.bytes), `${repo}:${tag}`);
    }
  });
});
