import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadBuildsConfig, registryHostFromAddress } from './config.js';

describe('loadBuildsConfig', () => {
  it('has the documented defaults', () => {
    assert.deepEqual(loadBuildsConfig({}), {
      maxConcurrent: 2,
      registryHost: null,
      registryInsecure: true,
      builder: undefined,
      buildkitHost: undefined,
      defaultTimeoutSeconds: 3600,
      maxTimeoutSeconds: 86_400,
      maxSourceBytes: 256 * 1024 * 1024,
    });
  });

  it('reads every variable', () => {
    const config = loadBuildsConfig({
      KILN_MAX_CONCURRENT_BUILDS: '5',
      KILN_REGISTRY_HOST: 'Registry.Example:8443',
      KILN_REGISTRY_INSECURE: 'false',
      KILN_BUILDER: 'buildah',
      BUILDKIT_HOST: 'tcp://buildkitd:1234',
      KILN_BUILD_TIMEOUT_SECONDS: '600',
      KILN_BUILD_MAX_TIMEOUT_SECONDS: '1200',
      KILN_BUILD_MAX_SOURCE_BYTES: '1048576',
    });
    assert.equal(config.maxConcurrent, 5);
    assert.equal(config.registryHost, 'registry.example:8443');
    assert.equal(config.registryInsecure, false);
    assert.equal(config.builder, 'buildah');
    assert.equal(config.buildkitHost, 'tcp://buildkitd:1234');
    assert.equal(config.defaultTimeoutSeconds, 600);
    assert.equal(config.maxTimeoutSeconds, 1200);
    assert.equal(config.maxSourceBytes, 1048576);
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ KILN_MAX_CONCURRENT_BUILDS: '0' }, /KILN_MAX_CONCURRENT_BUILDS must be a positive whole number/],
    [{ KILN_MAX_CONCURRENT_BUILDS: '1.5' }, /KILN_MAX_CONCURRENT_BUILDS/],
    [{ KILN_REGISTRY_HOST: 'http://kiln:5000' }, /KILN_REGISTRY_HOST: .*without a scheme/],
    [{ KILN_REGISTRY_INSECURE: 'maybe' }, /KILN_REGISTRY_INSECURE must be true or false/],
    [{ KILN_BUILD_TIMEOUT_SECONDS: '100', KILN_BUILD_MAX_TIMEOUT_SECONDS: '50' }, /above KILN_BUILD_MAX_TIMEOUT_SECONDS/],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)}`, () => assert.throws(() => loadBuildsConfig(env), message));
  }
});

describe('registryHostFromAddress', () => {
  const table: Array<[{ address: string; port: number }, string]> = [
    [{ address: '127.0.0.1', port: 41234 }, '127.0.0.1:41234'],
    [{ address: '0.0.0.0', port: 5000 }, '127.0.0.1:5000'],
    [{ address: '::', port: 5000 }, '[::1]:5000'],
    [{ address: '::1', port: 5000 }, '[::1]:5000'],
    [{ address: '10.0.0.7', port: 8083 }, '10.0.0.7:8083'],
  ];
  for (const [address, want] of table) it(`${address.address} → ${want}`, () => assert.equal(registryHostFromAddress(address), want));
});
