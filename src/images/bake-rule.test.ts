import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Classification } from '../oci/classify.js';
import { OCI_INDEX, OCI_MANIFEST } from '../oci/media-types.js';
import { bakesForPush } from './bake-rule.js';

const IMAGE = `sha256:${'1'.repeat(64)}`;
const INDEX = `sha256:${'2'.repeat(64)}`;
const ARM = `sha256:${'3'.repeat(64)}`;
const AMD = `sha256:${'4'.repeat(64)}`;

const runnable: Classification = { kind: 'runnable-image', configMediaType: 'application/vnd.oci.image.config.v1+json' };
const child = (digest: string, architecture: string) => ({ mediaType: OCI_MANIFEST, digest, size: 1, platform: { os: 'linux', architecture } });
const multi = (...toBake: ReturnType<typeof child>[]): Classification => ({ kind: 'multi-platform-image', mediaType: OCI_INDEX, toBake, available: toBake.map((d) => d.platform) });

test('bakesForPush: a tag or an index names what is baked, a digest push of one image does not', () => {
  const cases: [string, Classification, { tag: string | null; digest: string }, string[]][] = [
    ['image by tag', runnable, { tag: 'v1', digest: IMAGE }, [`acme/app:v1 ${IMAGE} - -`]],
    ['image by digest (an index child, or untagged)', runnable, { tag: null, digest: IMAGE }, []],
    ['index by tag: its configured platforms', multi(child(ARM, 'arm64')), { tag: 'v1', digest: INDEX }, [`acme/app:v1 ${ARM} ${INDEX} linux/arm64`]],
    ['index by digest: the same images, named by the index digest', multi(child(ARM, 'arm64')), { tag: null, digest: INDEX }, [`acme/app@ ${ARM} ${INDEX} linux/arm64`]],
    ['index with two configured platforms', multi(child(AMD, 'amd64'), child(ARM, 'arm64')), { tag: 'v1', digest: INDEX }, [`acme/app:v1 ${AMD} ${INDEX} linux/amd64`, `acme/app:v1 ${ARM} ${INDEX} linux/arm64`]],
    ['index without a configured platform', multi(), { tag: 'v1', digest: INDEX }, []],
    ['build cache', { kind: 'build-cache', form: 'image-manifest', mediaType: 'application/vnd.buildkit.cacheconfig.v0' }, { tag: 'v1', digest: IMAGE }, []],
    ['artifact', { kind: 'artifact', mediaType: 'application/vnd.example', typeOf: 'config' }, { tag: 'sig', digest: IMAGE }, []],
  ];
  for (const [name, c, pushed, want] of cases) {
    const got = bakesForPush(c, { repo: 'acme/app', ...pushed }).map((s) => `${s.repo}${s.tag === null ? '@' : `:${s.tag}`} ${s.digest} ${s.indexDigest ?? '-'} ${s.platform ?? '-'}`);
    assert.deepEqual(got, want, name);
  }
});
