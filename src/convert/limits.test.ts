import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BakeError } from './errors.js';
import { BAKE_LIMIT_SETTINGS, BakeBudget, bakeLimitsFromEnv, DEFAULT_BAKE_LIMITS, limitExceeded, type BakeLimits } from './limits.js';

describe('bakeLimitsFromEnv', () => {
  const table: Array<[Record<string, string>, Partial<BakeLimits>]> = [
    [{}, {}],
    [{ KILN_BAKE_MAX_BYTES: '1048576' }, { maxUnpackedBytes: 1048576 }],
    [{ KILN_BAKE_MAX_ENTRIES: ' 2000000 ', KILN_BAKE_MAX_LAYERS: '16' }, { maxEntries: 2_000_000, maxLayers: 16 }],
    [{ KILN_BAKE_MAX_DISK_BYTES: '68719476736', KILN_BAKE_MAX_SYMLINK_HOPS: '8', KILN_BAKE_MAX_RESOLVE_STEPS: '1000' }, { maxDiskBytes: 64 * 2 ** 30, maxSymlinkHops: 8, maxResolveStepsPerLayer: 1000 }],
    [{ KILN_BAKE_MAX_BYTES: '' }, {}],
  ];
  for (const [env, expected] of table) {
    it(JSON.stringify(env), () => assert.deepEqual(bakeLimitsFromEnv(env), { ...DEFAULT_BAKE_LIMITS, ...expected }));
  }
  for (const bad of ['0', '-5', '1.5', '4GiB', 'lots', '9007199254740993']) {
    it(`refuses KILN_BAKE_MAX_BYTES=${bad}`, () => assert.throws(() => bakeLimitsFromEnv({ KILN_BAKE_MAX_BYTES: bad }), /KILN_BAKE_MAX_BYTES must be a positive whole number/));
  }
  it('has a setting for every limit, each named KILN_BAKE_*', () => {
    assert.deepEqual(Object.keys(BAKE_LIMIT_SETTINGS).sort(), Object.keys(DEFAULT_BAKE_LIMITS).sort());
    for (const { env } of Object.values(BAKE_LIMIT_SETTINGS)) assert.match(env, /^KILN_BAKE_MAX_[A-Z_]+$/);
  });
});

describe('limitExceeded', () => {
  it('names the limit, its value and the setting to raise', () => {
    const err = limitExceeded('maxUnpackedBytes', { ...DEFAULT_BAKE_LIMITS, maxUnpackedBytes: 1536 }, 'too big');
    assert.ok(err instanceof BakeError);
    assert.equal(err.code, 'LIMIT_EXCEEDED');
    assert.equal(err.message, 'too big: the limit of unpacked bytes per image is 1536 bytes (1.5 KiB); raise KILN_BAKE_MAX_BYTES to allow more');
    assert.equal(limitExceeded('maxLayers', DEFAULT_BAKE_LIMITS, 'x').message, 'x: the limit of layers per image is 128; raise KILN_BAKE_MAX_LAYERS to allow more');
  });
});

describe('BakeBudget', () => {
  const limits: BakeLimits = { maxUnpackedBytes: 100, maxEntries: 3, maxLayers: 2, maxDiskBytes: 4096, maxSymlinkHops: 2, maxResolveStepsPerLayer: 5 };
  const hits = (setting: string) => (err: unknown) => err instanceof BakeError && err.code === 'LIMIT_EXCEEDED' && err.message.includes(setting);
  const table: Array<[string, (b: BakeBudget) => void, string | null]> = [
    ['layers at the limit', (b) => b.checkLayerCount(2), null],
    ['layers over it', (b) => b.checkLayerCount(3), 'KILN_BAKE_MAX_LAYERS'],
    ['bytes up to the limit', (b) => { b.addUnpackedBytes(60); b.addUnpackedBytes(40); }, null],
    ['bytes over it', (b) => { b.addUnpackedBytes(60); b.addUnpackedBytes(41); }, 'KILN_BAKE_MAX_BYTES'],
    ['a file that would pass it', (b) => { b.addUnpackedBytes(50); b.expectFileBytes(51); }, 'KILN_BAKE_MAX_BYTES'],
    ['a file that fits', (b) => { b.addUnpackedBytes(50); b.expectFileBytes(50); }, null],
    ['entries over the limit', (b) => { for (let i = 0; i < 4; i++) b.addEntry(); }, 'KILN_BAKE_MAX_ENTRIES'],
    ['resolution steps per layer', (b) => { for (let i = 0; i < 5; i++) b.addResolveStep(); b.beginLayer(); for (let i = 0; i < 5; i++) b.addResolveStep(); }, null],
    ['resolution steps over it', (b) => { for (let i = 0; i < 6; i++) b.addResolveStep(); }, 'KILN_BAKE_MAX_RESOLVE_STEPS'],
    ['symlink hops', (b) => b.checkSymlinkHops(3, '"x"'), 'KILN_BAKE_MAX_SYMLINK_HOPS'],
    ['disk size', (b) => b.checkDiskBytes(4097), 'KILN_BAKE_MAX_DISK_BYTES'],
  ];
  for (const [name, act, setting] of table) {
    it(name, () => (setting ? assert.throws(() => act(new BakeBudget(limits)), hits(setting)) : assert.doesNotThrow(() => act(new BakeBudget(limits)))));
  }
});
