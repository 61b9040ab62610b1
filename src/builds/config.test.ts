import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadBuildsConfig, registryHostFromAddress } from './config.js';

describe('loadBuildsConfig', () => {
  it('has the documented defaults', () => {
    assert.deepEqual(loadBuildsConfig({}), {
      maxConcurrent: 2,
      runningPerTenant: 1,
      queuedPerTenant: 10,
      registryHost: null,
      registryInsecure: true,
      buildkitDir: undefined,
      buildkitPool: [],
      cniBinDir: undefined,
      buildSubnet: '10.213.0.0/16',
      daemonStartTimeoutMs: 60_000,
      defaultTimeoutSeconds: 1800,
      maxTimeoutSeconds: 3600,
      adminMaxTimeoutSeconds: 86_400,
      maxSourceBytes: 256 * 1024 * 1024,
      logMaxBytes: 16 * 1024 * 1024,
      retentionMs: 7 * 86_400_000,
      sseHeartbeatMs: 15_000,
      logPollMs: 500,
      logPublishMs: 2000,
    });
  });

  it('reads every variable', () => {
    const config = loadBuildsConfig({
      KILN_MAX_CONCURRENT_BUILDS: '5',
      KILN_BUILDS_PER_TENANT: '3',
      KILN_BUILD_QUEUE_PER_TENANT: '4',
      KILN_REGISTRY_HOST: 'Registry.Example:8443',
      KILN_REGISTRY_INSECURE: 'false',
      KILN_BUILDKIT_DIR: '/opt/buildkit/bin',
      BUILDKIT_HOST: 'tcp://bk1:1234, unix:///run/bk2.sock',
      KILN_CNI_BIN_DIR: '/opt/cni/bin',
      KILN_BUILD_SUBNET: '10.50.0.0/20',
      KILN_BUILDKIT_START_TIMEOUT_SECONDS: '9',
      KILN_BUILD_TIMEOUT_SECONDS: '600',
      KILN_BUILD_MAX_TIMEOUT_SECONDS: '1200',
      KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS: '7200',
      KILN_BUILD_MAX_SOURCE_BYTES: '1048576',
      KILN_BUILD_LOG_MAX_BYTES: '4096',
      KILN_BUILD_RETENTION: '2h',
      KILN_BUILD_SSE_HEARTBEAT_SECONDS: '0.5',
      KILN_BUILD_LOG_POLL_SECONDS: '2',
      KILN_BUILD_LOG_PUBLISH_SECONDS: '5',
    });
    assert.deepEqual(config, {
      maxConcurrent: 5,
      runningPerTenant: 3,
      queuedPerTenant: 4,
      registryHost: 'registry.example:8443',
      registryInsecure: false,
      buildkitDir: '/opt/buildkit/bin',
      buildkitPool: ['tcp://bk1:1234', 'unix:///run/bk2.sock'],
      cniBinDir: '/opt/cni/bin',
      buildSubnet: '10.50.0.0/20',
      daemonStartTimeoutMs: 9000,
      defaultTimeoutSeconds: 600,
      maxTimeoutSeconds: 1200,
      adminMaxTimeoutSeconds: 7200,
      maxSourceBytes: 1048576,
      logMaxBytes: 4096,
      retentionMs: 7_200_000,
      sseHeartbeatMs: 500,
      logPollMs: 2000,
      logPublishMs: 5000,
    });
    assert.equal(loadBuildsConfig({ KILN_BUILD_RETENTION: '0' }).retentionMs, null);
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ KILN_MAX_CONCURRENT_BUILDS: '0' }, /KILN_MAX_CONCURRENT_BUILDS must be a positive whole number/],
    [{ KILN_MAX_CONCURRENT_BUILDS: '1.5' }, /KILN_MAX_CONCURRENT_BUILDS/],
    [{ KILN_REGISTRY_HOST: 'http://kiln:5000' }, /KILN_REGISTRY_HOST: .*without a scheme/],
    [{ KILN_REGISTRY_INSECURE: 'maybe' }, /KILN_REGISTRY_INSECURE must be true or false/],
    [{ KILN_BUILD_TIMEOUT_SECONDS: '100', KILN_BUILD_MAX_TIMEOUT_SECONDS: '50' }, /above KILN_BUILD_MAX_TIMEOUT_SECONDS/],
    [{ KILN_BUILD_MAX_TIMEOUT_SECONDS: '90000' }, /above KILN_BUILD_ADMIN_MAX_TIMEOUT_SECONDS/],
    [{ KILN_BUILDS_PER_TENANT: '0' }, /KILN_BUILDS_PER_TENANT must be a positive whole number/],
    [{ KILN_BUILD_SUBNET: '10.0.0.0/28' }, /KILN_BUILD_SUBNET/],
    [{ KILN_BUILD_RETENTION: 'a week' }, /KILN_BUILD_RETENTION="a week" is not a duration/],
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
