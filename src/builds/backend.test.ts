import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkBuildOptions, selectBuilder, type BuilderEnvironment, type BuilderName } from './backend.js';

describe('selectBuilder', () => {
  const table: Array<[BuilderEnvironment, BuilderName]> = [
    [{ requested: undefined, buildkitHost: 'tcp://bk:1234', hasBuildctl: true }, 'buildkit'],
    [{ requested: 'auto', buildkitHost: 'unix:///run/buildkit/buildkitd.sock', hasBuildctl: true }, 'buildkit'],
    [{ requested: '', buildkitHost: undefined, hasBuildctl: true }, 'buildah'],
    [{ requested: undefined, buildkitHost: '  ', hasBuildctl: true }, 'buildah'],
    [{ requested: undefined, buildkitHost: 'tcp://bk:1234', hasBuildctl: false }, 'buildah'],
    [{ requested: 'buildah', buildkitHost: 'tcp://bk:1234', hasBuildctl: true }, 'buildah'],
    [{ requested: 'BuildKit', buildkitHost: undefined, hasBuildctl: false }, 'buildkit'],
    [{ requested: ' buildkit ', buildkitHost: undefined, hasBuildctl: true }, 'buildkit'],
  ];
  for (const [env, want] of table) {
    it(`${JSON.stringify(env)} → ${want}`, () => assert.equal(selectBuilder(env), want));
  }

  it('rejects an unknown builder by name', () => {
    assert.throws(
      () => selectBuilder({ requested: 'docker', buildkitHost: undefined, hasBuildctl: false }),
      /KILN_BUILDER="docker" is not a builder; use buildkit, buildah or auto/,
    );
  });
});

describe('checkBuildOptions', () => {
  it('accepts ordinary build args and platforms', () => {
    checkBuildOptions({ NODE_ENV: 'production', _x1: '', GREETING: 'a b,c=d' }, 'linux/amd64');
    checkBuildOptions({}, 'linux/arm/v7');
    checkBuildOptions({}, undefined);
  });
  const bad: Array<[Record<string, string>, string | undefined, RegExp]> = [
    [{ '1ABC': 'x' }, undefined, /build arg name "1ABC"/],
    [{ 'A=B': 'x' }, undefined, /build arg name "A=B"/],
    [{ '--opt': 'x' }, undefined, /build arg name "--opt"/],
    [{ A: 1 as unknown as string }, undefined, /build arg "A" must have a string value/],
    [{}, 'amd64', /platform "amd64" must look like os\/arch/],
    [{}, '--output=x', /platform "--output=x"/],
  ];
  for (const [args, platform, message] of bad) {
    it(`rejects ${JSON.stringify(args)} ${platform ?? ''}`, () => assert.throws(() => checkBuildOptions(args, platform), message));
  }
});
