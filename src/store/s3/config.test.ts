import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadS3Config, normalizePrefix } from './config.js';

describe('S3 settings', () => {
  it('nothing is S3 without KILN_S3_BUCKET', () => {
    assert.equal(loadS3Config({}), null);
    assert.equal(loadS3Config({ KILN_S3_BUCKET: '  ', KILN_S3_ENDPOINT: 'http://x:1' }), null);
  });

  it('defaults: AWS addressing, redirects on, 8 MiB parts, the SDK chain for credentials', () => {
    assert.deepEqual(loadS3Config({ KILN_S3_BUCKET: 'kiln-data' }), {
      bucket: 'kiln-data',
      endpoint: undefined,
      region: 'us-east-1',
      prefix: '',
      forcePathStyle: false,
      redirect: true,
      redirectTtlSeconds: 600,
      partBytes: 8 * 1024 * 1024,
      uploadMemoryBytes: 64 * 1024 * 1024,
      credentials: undefined,
    });
  });

  it('an endpoint turns on path-style addressing unless told otherwise; keys and region come from the environment', () => {
    const c = loadS3Config({
      KILN_S3_BUCKET: 'bk1',
      KILN_S3_ENDPOINT: 'http://127.0.0.1:7480',
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'AK',
      AWS_SECRET_ACCESS_KEY: 'SK',
      KILN_S3_PREFIX: '/team/kiln/',
      KILN_S3_REDIRECT: 'false',
    })!;
    assert.equal(c.forcePathStyle, true);
    assert.equal(c.region, 'eu-west-1');
    assert.equal(c.prefix, 'team/kiln/');
    assert.equal(c.redirect, false);
    assert.deepEqual(c.credentials, { accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: undefined });
    assert.equal(loadS3Config({ KILN_S3_BUCKET: 'bk1', KILN_S3_ENDPOINT: 'http://h:1', KILN_S3_FORCE_PATH_STYLE: 'no' })!.forcePathStyle, false);
    assert.equal(loadS3Config({ KILN_S3_BUCKET: 'bk1', KILN_S3_REGION: 'ap-south-1', AWS_REGION: 'x' })!.region, 'ap-south-1');
  });

  const bad: [Record<string, string>, RegExp][] = [
    [{ KILN_S3_BUCKET: 'Bad_Bucket' }, /KILN_S3_BUCKET "Bad_Bucket" is not a valid bucket name/],
    [{ KILN_S3_BUCKET: 'ok-bucket', KILN_S3_ENDPOINT: '127.0.0.1:7480' }, /KILN_S3_ENDPOINT .* must be a URL/],
    [{ KILN_S3_BUCKET: 'ok-bucket', KILN_S3_PART_BYTES: '1048576' }, /KILN_S3_PART_BYTES must be between 5242880/],
    [{ KILN_S3_BUCKET: 'ok-bucket', KILN_S3_PART_BYTES: '8mb' }, /KILN_S3_PART_BYTES must be a whole number/],
    [{ KILN_S3_BUCKET: 'ok-bucket', KILN_S3_UPLOAD_MEMORY_BYTES: '10485760' }, /KILN_S3_UPLOAD_MEMORY_BYTES .* at least two parts/],
    [{ KILN_S3_BUCKET: 'ok-bucket', KILN_S3_REDIRECT: 'maybe' }, /KILN_S3_REDIRECT must be true or false/],
    [{ KILN_S3_BUCKET: 'ok-bucket', KILN_S3_REDIRECT_TTL_SECONDS: '0' }, /KILN_S3_REDIRECT_TTL_SECONDS must be a whole number from 1 to 604800/],
    [{ KILN_S3_BUCKET: 'ok-bucket', KILN_S3_PREFIX: 'a/../b' }, /KILN_S3_PREFIX .* without empty, '.' or '..' parts/],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)}`, () => assert.throws(() => loadS3Config(env), message));
  }

  it('prefixes', () => {
    assert.equal(normalizePrefix(''), '');
    assert.equal(normalizePrefix('/'), '');
    assert.equal(normalizePrefix('kiln'), 'kiln/');
    assert.equal(normalizePrefix('a/b//'), 'a/b/');
    assert.throws(() => normalizePrefix('a//b'), /KILN_S3_PREFIX/);
  });
});
