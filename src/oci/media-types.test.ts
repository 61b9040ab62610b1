import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isMediaType } from './media-types.js';

describe('isMediaType', () => {
  const cases: [string, boolean][] = [
    ['application/vnd.oci.image.manifest.v1+json', true],
    ['application/vnd.docker.image.rootfs.diff.tar.gzip', true],
    ['application/vnd.buildkit.cacheconfig.v0', true],
    ['text/plain; charset=utf-8', true],
    ['application/vnd.cncf.helm.chart.content.v1.tar+gzip', true],
    [`a/${'b'.repeat(127)}`, true],
    [`a/${'b'.repeat(128)}`, false],
    ['', false],
    ['application', false],
    ['application/', false],
    ['/json', false],
    ['application/json/extra', false],
    ['application/js on', false],
    ['application/json\u0000', false],
    ['application/\u0000json', false],
    ['application/jsön', false],
    ['application/json; x=\ud800', false],
    ['application/json\n', false],
    ['.application/json', false],
  ];
  for (const [value, ok] of cases) {
    it(`${JSON.stringify(value).slice(0, 40)} → ${ok}`, () => assert.equal(isMediaType(value), ok));
  }
});
