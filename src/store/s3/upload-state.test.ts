import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextPartNumber, parseUploadState, serializeUploadState, type UploadState } from './upload-state.js';

const base: UploadState = { v: 1, seq: 2, size: 5_242_890, multipart: { uploadId: 'u', parts: [{ n: 1, etag: '"e1"', size: 5_242_880 }] }, tail: { key: 'k', size: 10 }, digests: { sha256: 'AAAA' } };

describe('S3 upload state', () => {
  it('round-trips and numbers the next part after the last one', () => {
    assert.deepEqual(parseUploadState(serializeUploadState(base)), base);
    assert.equal(nextPartNumber(base), 2);
    assert.equal(nextPartNumber({ ...base, multipart: null, tail: null, size: 0 }), 1);
    assert.equal(nextPartNumber({ ...base, size: 5_242_880 * 2 + 10, multipart: { uploadId: 'u', parts: [...base.multipart!.parts, { n: 7, etag: '"e"', size: 5_242_880 }] } }), 8);
  });

  const broken: [string, unknown][] = [
    ['a size that disagrees with its parts and tail', { ...base, size: 1 }],
    ['an unknown version', { ...base, v: 2 }],
    ['an unknown digest algorithm', { ...base, digests: { md5: 'x' } }],
    ['a part number beyond S3’s 10000', { ...base, multipart: { uploadId: 'u', parts: [{ n: 10_001, etag: 'e', size: 5_242_880 }] } }],
  ];
  for (const [what, doc] of broken) {
    it(`refuses ${what}`, () => assert.throws(() => parseUploadState(JSON.stringify(doc))));
  }
});
