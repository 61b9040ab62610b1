import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { TransferActivity } from './transfer-activity.js';

describe('TransferActivity', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  function setUp() {
    const changes: boolean[] = [];
    const activity = new TransferActivity((busy) => changes.push(busy), 100);
    return { changes, activity, transfer: (closed = false) => Object.assign(new EventEmitter(), { closed }) };
  }

  it('turns busy with the first transfer and quiet only once none ran for the quiet time', () => {
    const { changes, activity, transfer } = setUp();
    const a = transfer();
    const b = transfer();
    activity.track(a);
    activity.track(b);
    assert.deepEqual(changes, [true]);
    a.emit('close');
    mock.timers.tick(500);
    assert.deepEqual(changes, [true], 'b is still running');
    b.emit('close');
    mock.timers.tick(99);
    assert.equal(activity.isBusy, true);
    mock.timers.tick(1);
    assert.deepEqual(changes, [true, false]);
    assert.equal(activity.isBusy, false);
  });

  it('a transfer inside the quiet time keeps the spell going, with no change reported', () => {
    const { changes, activity, transfer } = setUp();
    const a = transfer();
    activity.track(a);
    a.emit('close');
    mock.timers.tick(60);
    const b = transfer();
    activity.track(b);
    mock.timers.tick(200);
    b.emit('close');
    mock.timers.tick(100);
    assert.deepEqual(changes, [true, false]);
    activity.track(transfer());
    assert.deepEqual(changes, [true, false, true]);
  });

  it('does not count a transfer whose response is already closed (no close event would end it)', () => {
    const { changes, activity, transfer } = setUp();
    activity.track(transfer(true));
    assert.deepEqual(changes, []);
    assert.equal(activity.isBusy, false);
  });
});
