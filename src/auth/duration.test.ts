import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDuration } from './duration.js';

describe('parseDuration', () => {
  const good: [string, number][] = [
    ['90s', 90],
    ['15m', 900],
    ['12h', 43_200],
    ['30d', 2_592_000],
    ['2w', 1_209_600],
    ['1y', 31_536_000],
    [' 7d ', 604_800],
  ];
  for (const [text, seconds] of good) it(`${text} is ${seconds}s`, () => assert.equal(parseDuration(text), seconds));
  for (const text of ['', '30', 'd', '0d', '-1d', '1.5h', '30 days', '30D', '99999999999999999y']) {
    it(`refuses "${text}"`, () => assert.throws(() => parseDuration(text), /not a duration/));
  }
});
