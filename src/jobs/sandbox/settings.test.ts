import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpuSeconds, heapMiB, loadSandboxSettings, parseBytes, parseDurationMs } from './settings.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('parseDurationMs', () => {
  const good: Array<[string, number]> = [['90s', 90_000], ['10m', 600_000], ['1h', 3_600_000], ['1.5h', 5_400_000], ['45', 45_000], [' 2M ', 120_000], ['0.5s', 500]];
  for (const [text, ms] of good) it(`${text} is ${ms} ms`, () => assert.equal(parseDurationMs(text), ms));
  for (const bad of ['', '0', '0s', '-1m', '10d', 'ten minutes', '1e3', '5 m s']) it(`refuses "${bad}"`, () => assert.equal(parseDurationMs(bad), null));
});

describe('parseBytes', () => {
  const good: Array<[string, number]> = [['1073741824', GiB], ['2GiB', 2 * GiB], ['2G', 2 * GiB], ['512MiB', 512 * MiB], ['512 mib', 512 * MiB], ['1.5GiB', 1.5 * GiB], ['64k', 64 * 1024], ['100B', 100]];
  for (const [text, bytes] of good) it(`${text} is ${bytes}`, () => assert.equal(parseBytes(text), bytes));
  for (const bad of ['', '0', '-1G', '2GB', '2 gigs', 'lots', '1e9']) it(`refuses "${bad}"`, () => assert.equal(parseBytes(bad), null));
});

describe('loadSandboxSettings', () => {
  it('defaults: bwrap, 30m, 2GiB; nobody when root, the own user otherwise', () => {
    const asRoot = loadSandboxSettings({}, { uid: 0, gid: 0 });
    assert.equal(asRoot.mode, 'bwrap');
    assert.equal(asRoot.timeoutMs, 30 * 60_000);
    assert.equal(asRoot.timeoutText, '30m');
    assert.equal(asRoot.memoryBytes, 2 * GiB);
    assert.equal(asRoot.yieldMs, 10_000);
    assert.deepEqual([asRoot.uid, asRoot.gid], [65534, 65534]);
    const asUser = loadSandboxSettings({}, { uid: 1000, gid: 100 });
    assert.deepEqual([asUser.uid, asUser.gid], [1000, 100]);
  });

  it('reads the settings and passes the engine limits through', () => {
    const s = loadSandboxSettings({ KILN_BAKE_SANDBOX: 'none', KILN_BAKE_TIMEOUT: '10m', KILN_BAKE_MEMORY: '512MiB', KILN_BAKE_MAX_BYTES: '1000' }, { uid: 0, gid: 0 });
    assert.equal(s.mode, 'none');
    assert.equal(s.timeoutText, '10m');
    assert.equal(s.memoryBytes, 512 * MiB);
    assert.equal(s.limits.maxUnpackedBytes, 1000);
  });

  it('KILN_BAKE_YIELD: a duration, or 0 for bakes that never pause', () => {
    const yieldOf = (text: string) => loadSandboxSettings({ KILN_BAKE_YIELD: text }, { uid: 0, gid: 0 }).yieldMs;
    assert.equal(yieldOf('1m'), 60_000);
    assert.equal(yieldOf('2.5'), 2500);
    for (const zero of ['0', '0s', '0.0']) assert.equal(yieldOf(zero), 0, zero);
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ KILN_BAKE_SANDBOX: 'docker' }, /^KILN_BAKE_SANDBOX must be "bwrap" .* got "docker"$/],
    [{ KILN_BAKE_TIMEOUT: '10 minutes' }, /^KILN_BAKE_TIMEOUT must be a positive duration .* got "10 minutes"$/],
    [{ KILN_BAKE_TIMEOUT: '0' }, /^KILN_BAKE_TIMEOUT /],
    [{ KILN_BAKE_MEMORY: '2GB' }, /^KILN_BAKE_MEMORY must be a size .* got "2GB"$/],
    [{ KILN_BAKE_MEMORY: '16MiB' }, /^KILN_BAKE_MEMORY must be at least 96.0 MiB .* got "16MiB"$/],
    [{ KILN_BAKE_YIELD: 'soon' }, /^KILN_BAKE_YIELD must be a duration .*0: bakes never pause.* got "soon"$/],
    [{ KILN_BAKE_YIELD: '-1s' }, /^KILN_BAKE_YIELD /],
    [{ KILN_BAKE_MAX_BYTES: 'lots' }, /^KILN_BAKE_MAX_BYTES must be a positive whole number/],
  ];
  for (const [env, message] of bad) it(`refuses ${JSON.stringify(env)}`, () => assert.throws(() => loadSandboxSettings(env, { uid: 0, gid: 0 }), { message }));
});

describe('derived limits', () => {
  it('the V8 heap is three quarters of the memory, at least 32 MiB', () => {
    assert.equal(heapMiB(2 * GiB), 1536);
    assert.equal(heapMiB(128 * MiB), 96);
    assert.equal(heapMiB(40 * MiB), 32);
  });
  it('CPU time is twice the wall time, in whole seconds', () => {
    assert.equal(cpuSeconds(loadSandboxSettings({ KILN_BAKE_TIMEOUT: '10m' })), 1200);
    assert.equal(cpuSeconds(loadSandboxSettings({ KILN_BAKE_TIMEOUT: '0.4s' })), 1);
  });
});
