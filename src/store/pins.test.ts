import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DigestPins } from './pins.js';

const d = `sha256:${'a'.repeat(64)}`;

describe('DigestPins', () => {
  it('a pin counts at once and until it is released (once)', async () => {
    const pins = new DigestPins();
    const first = await pins.pin(d);
    const second = await pins.pin(d);
    assert.ok(pins.has(d));
    first();
    first();
    assert.ok(pins.has(d), 'the other pin still holds');
    second();
    assert.ok(!pins.has(d));
  });

  it('a pin taken while the collector deletes the digest counts at once but resolves only after the delete', async () => {
    const pins = new DigestPins();
    const doneDeleting = pins.holdForDelete(d);
    let resolved = false;
    const pinned = Promise.resolve(pins.pin(d)).then((release) => {
      resolved = true;
      return release;
    });
    assert.ok(pins.has(d), 'the collector sees the pin from the start');
    await new Promise((r) => setImmediate(r));
    assert.equal(resolved, false, 'the request waits for the delete');
    doneDeleting();
    (await pinned)();
    assert.equal(resolved, true);
    assert.ok(!pins.has(d));
    assert.equal(typeof pins.pin(d), 'function', 'no delete in flight: the pin is in force at once');
  });
});
