import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ROUTE_METHODS, matchV2Route, movesBlobData, requiredAction, type V2Route } from './routes.js';
import { parseRange } from './http.js';

const S256 = `sha256:${'a'.repeat(64)}`;

describe('matchV2Route', () => {
  const table: [string, V2Route | null][] = [
    ['/v2', { kind: 'base' }],
    ['/v2/', { kind: 'base' }],
    ['/v2/_catalog', { kind: 'catalog' }],
    ['/v2/busybox/tags/list', { kind: 'tags', name: 'busybox' }],
    ['/v2/cache/global/node/tags/list', { kind: 'tags', name: 'cache/global/node' }],
    ['/v2/library/base/manifests/latest', { kind: 'manifest', name: 'library/base', reference: 'latest' }],
    [`/v2/builds/job1/manifests/${S256}`, { kind: 'manifest', name: 'builds/job1', reference: S256 }],
    [`/v2/a/blobs/${S256}`, { kind: 'blob', name: 'a', digest: S256 }],
    ['/v2/a/b/c/blobs/uploads/', { kind: 'uploads', name: 'a/b/c' }],
    ['/v2/a/b/c/blobs/uploads', { kind: 'uploads', name: 'a/b/c' }],
    ['/v2/a/blobs/uploads/0b5f-uuid', { kind: 'upload', name: 'a', id: '0b5f-uuid' }],
    [`/v2/a/referrers/${S256}`, { kind: 'referrers', name: 'a', digest: S256 }],
    // Names may contain the keywords as components; the last keyword wins.
    ['/v2/blobs/manifests/latest', { kind: 'manifest', name: 'blobs', reference: 'latest' }],
    ['/v2/manifests/manifests/latest', { kind: 'manifest', name: 'manifests', reference: 'latest' }],
    [`/v2/x/blobs/blobs/${S256}`, { kind: 'blob', name: 'x/blobs', digest: S256 }],
    ['/v2/x/blobs/blobs/uploads/', { kind: 'uploads', name: 'x/blobs' }],
    ['/v2/tags/tags/list', { kind: 'tags', name: 'tags' }],
    ['/v2/x/uploads/blobs/uploads/id1', { kind: 'upload', name: 'x/uploads', id: 'id1' }],
    [`/v2/referrers/referrers/${S256}`, { kind: 'referrers', name: 'referrers', digest: S256 }],
    // The handler validates names and references; the router only splits.
    ['/v2/UPPER/manifests/latest', { kind: 'manifest', name: 'UPPER', reference: 'latest' }],
    ['/v2/a/../b/manifests/latest', { kind: 'manifest', name: 'a/../b', reference: 'latest' }],
    // No route.
    ['/', null],
    ['/v1/_ping', null],
    ['/v2x', null],
    ['/v2//', null],
    ['/v2/_catalog/', null],
    ['/v2/a', null],
    ['/v2/a/tags', null],
    ['/v2/a/tags/list/', null],
    ['/v2/manifests/latest', null],
    ['/v2/a/manifests/', null],
    ['/v2/a/manifests/latest/extra', null],
    ['/v2/a/blobs/', null],
    ['/v2/a/referrers/', null],
    ['/v2/a/blobs/uploads/id/extra', null],
  ];
  for (const [path, want] of table) {
    it(`${path} → ${want ? want.kind : 'none'}`, () => assert.deepEqual(matchV2Route(path), want));
  }
});

describe('requiredAction and ROUTE_METHODS', () => {
  const manifest: V2Route = { kind: 'manifest', name: 'a', reference: 'latest' };
  it('maps methods to pull, push and delete', () => {
    assert.equal(requiredAction(manifest, 'GET'), 'pull');
    assert.equal(requiredAction(manifest, 'HEAD'), 'pull');
    assert.equal(requiredAction(manifest, 'PUT'), 'push');
    assert.equal(requiredAction({ kind: 'uploads', name: 'a' }, 'POST'), 'push');
    assert.equal(requiredAction({ kind: 'upload', name: 'a', id: 'x' }, 'PATCH'), 'push');
    assert.equal(requiredAction({ kind: 'upload', name: 'a', id: 'x' }, 'GET'), 'pull');
    assert.equal(requiredAction(manifest, 'DELETE'), 'delete');
    assert.equal(requiredAction({ kind: 'blob', name: 'a', digest: S256 }, 'DELETE'), 'delete');
    // Cancelling one's own upload is part of pushing.
    assert.equal(requiredAction({ kind: 'upload', name: 'a', id: 'x' }, 'DELETE'), 'push');
  });
  it('lists the methods of every route the spec defines', () => {
    assert.deepEqual(ROUTE_METHODS, {
      base: ['GET', 'HEAD'],
      catalog: ['GET'],
      tags: ['GET'],
      manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
      blob: ['GET', 'HEAD', 'DELETE'],
      uploads: ['POST'],
      upload: ['GET', 'PATCH', 'PUT', 'DELETE'],
      referrers: ['GET'],
    });
  });
});

describe('parseRange', () => {
  // [header, size, expected]
  const table: [string | undefined, number, ReturnType<typeof parseRange>][] = [
    [undefined, 100, null],
    ['', 100, null],
    ['bytes=0-0', 100, { start: 0, end: 0 }],
    ['bytes=0-99', 100, { start: 0, end: 99 }],
    ['bytes=10-19', 100, { start: 10, end: 19 }],
    ['bytes=10-', 100, { start: 10, end: 99 }],
    ['bytes=99-', 100, { start: 99, end: 99 }],
    ['bytes=50-1000', 100, { start: 50, end: 99 }], // end clamped to the last byte
    ['bytes=-10', 100, { start: 90, end: 99 }], // suffix
    ['bytes=-1', 100, { start: 99, end: 99 }],
    ['bytes=-100', 100, { start: 0, end: 99 }],
    ['bytes=-1000', 100, { start: 0, end: 99 }], // suffix longer than the blob: all of it
    [' bytes=0-1 ', 100, { start: 0, end: 1 }],
    ['bytes=100-', 100, 'invalid'], // starts past the end
    ['bytes=100-200', 100, 'invalid'],
    ['bytes=20-10', 100, 'invalid'], // end before start
    ['bytes=-0', 100, 'invalid'],
    ['bytes=-', 100, 'invalid'],
    ['bytes=0-', 0, 'invalid'], // nothing to satisfy in an empty blob
    ['bytes=-5', 0, 'invalid'],
    ['bytes=0-1,5-6', 100, 'invalid'], // multipart ranges are not served
    ['items=0-1', 100, 'invalid'],
    ['bytes=a-b', 100, 'invalid'],
    ['bytes 0-1', 100, 'invalid'],
    ['bytes=1.5-2', 100, 'invalid'],
    ['bytes=0-1/100', 100, 'invalid'],
  ];
  for (const [header, size, want] of table) {
    it(`${JSON.stringify(header)} of ${size} bytes → ${JSON.stringify(want)}`, () => assert.deepEqual(parseRange(header, size), want));
  }
});

describe('movesBlobData', () => {
  const blob: V2Route = { kind: 'blob', name: 'a', digest: S256 };
  const upload: V2Route = { kind: 'upload', name: 'a', id: 'u1' };
  const uploads: V2Route = { kind: 'uploads', name: 'a' };
  const manifest: V2Route = { kind: 'manifest', name: 'a', reference: 'latest' };
  const table: [V2Route, string, boolean][] = [
    [blob, 'GET', true],
    [blob, 'HEAD', false],
    [blob, 'DELETE', false],
    [upload, 'PATCH', true],
    [upload, 'PUT', true],
    [upload, 'GET', false],
    [upload, 'DELETE', false],
    [uploads, 'POST', true],
    [manifest, 'GET', false],
    [manifest, 'PUT', false],
    [{ kind: 'base' }, 'GET', false],
    [{ kind: 'tags', name: 'a' }, 'GET', false],
  ];
  for (const [route, method, expected] of table) {
    it(`${method} ${route.kind} → ${expected}`, () => assert.equal(movesBlobData(route, method), expected));
  }
});
