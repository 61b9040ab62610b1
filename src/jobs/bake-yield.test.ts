import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { RegistryState, yieldWhileBusy } from './bake-yield.js';

describe('yieldWhileBusy', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'] }));
  afterEach(() => mock.timers.reset());

  function setUp(busy = false) {
    const calls: string[] = [];
    const registry = new RegistryState();
    registry.set(busy);
    return { calls, registry, target: { pause: () => calls.push('pause'), resume: () => calls.push('resume') } };
  }

  it('pauses while the registry is busy and resumes when it is quiet', () => {
    const { calls, registry, target } = setUp();
    const y = yieldWhileBusy(target, registry, 10_000);
    assert.deepEqual(calls, []);
    registry.set(true);
    mock.timers.tick(300);
    registry.set(false);
    registry.set(true);
    mock.timers.tick(200);
    assert.deepEqual(calls, ['pause', 'resume', 'pause']);
    assert.equal(y.pausedMs(), 500, 'the pause under way counts');
    y.stop();
    assert.deepEqual(calls, ['pause', 'resume', 'pause', 'resume']);
    registry.set(false);
    registry.set(true);
    assert.equal(calls.length, 4, 'nothing after stop');
  });

  it('a registry busy from the start pauses at once', () => {
    const { calls, registry, target } = setUp(true);
    yieldWhileBusy(target, registry, 1000).stop();
    assert.deepEqual(calls, ['pause', 'resume']);
  });

  it('gives way for the budget in all, then runs although the registry stays busy', () => {
    const { calls, registry, target } = setUp(true);
    const y = yieldWhileBusy(target, registry, 1000);
    mock.timers.tick(400);
    registry.set(false);
    registry.set(true);
    mock.timers.tick(599);
    assert.deepEqual(calls, ['pause', 'resume', 'pause']);
    mock.timers.tick(1);
    assert.deepEqual(calls, ['pause', 'resume', 'pause', 'resume'], 'budget spent');
    registry.set(false);
    registry.set(true);
    mock.timers.tick(5000);
    assert.equal(calls.length, 4, 'no further pauses');
    assert.equal(y.pausedMs(), 1000);
    y.stop();
    assert.equal(calls.length, 4, 'stop does not resume what runs');
  });

  it('a budget of 0 never pauses', () => {
    const { calls, registry, target } = setUp(true);
    const y = yieldWhileBusy(target, registry, 0);
    registry.set(false);
    registry.set(true);
    y.stop();
    assert.deepEqual(calls, []);
  });
});
