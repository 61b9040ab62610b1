import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildkitdToml, parseProcRoutes, parseSubnet, pickBridgeNetwork } from './daemon-config.js';

describe('buildkitdToml', () => {
  const base = { registry: '127.0.0.1:5000', bridge: { name: 'kbkd505', subnet: '10.213.5.0/24' }, cniBinDir: '/usr/lib/cni' };
  it('runs RUN steps on the daemon\'s own bridge, grants no insecure entitlement, and marks only this registry plain HTTP', () => {
    const toml = buildkitdToml({ ...base, insecure: true });
    assert.match(toml, /^insecure-entitlements = \[\]$/m);
    assert.match(toml, /\[worker\.oci\]\n  enabled = true\n  gc = false\n  noProcessSandbox = false\n  networkMode = "bridge"\n  cniBinaryPath = "\/usr\/lib\/cni"\n  bridgeName = "kbkd505"\n  bridgeSubnet = "10\.213\.5\.0\/24"\n/);
    assert.match(toml, /\[worker\.containerd\]\n  enabled = false/);
    assert.match(toml, /\[registry\."127\.0\.0\.1:5000"\]\n  http = true\n$/);
    assert.equal(toml.match(/\[registry\./g)?.length, 1, 'no other registry loses TLS');
    assert.doesNotMatch(toml, /networkMode = "host"|insecure = true/);
  });
  it('says nothing about an HTTPS registry', () => {
    assert.doesNotMatch(buildkitdToml({ ...base, insecure: false }), /\[registry/);
  });
});

describe('parseProcRoutes', () => {
  it('reads destinations and masks', () => {
    const text = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0',
      'kbkd505\t0005D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    ].join('\n');
    assert.deepEqual(parseProcRoutes(text), [
      { destination: 0, mask: 0 },
      { destination: 0x0ad50500, mask: 0xffffff00 },
    ]);
  });
});

describe('parseSubnet', () => {
  it('normalizes the network', () => assert.deepEqual(parseSubnet('10.213.7.9/16'), { network: 0x0ad50000, prefix: 16 }));
  for (const bad of ['10.213.0.0', '10.213.0.0/25', '300.1.1.1/16', 'x/16', '10.0.0.0/4']) {
    it(`refuses ${bad}`, () => assert.throws(() => parseSubnet(bad), /KILN_BUILD_SUBNET/));
  }
});

describe('pickBridgeNetwork', () => {
  const first = () => 0;
  it('skips /24s this process took and those a route covers, never minding the default route', () => {
    const routes = [
      { destination: 0, mask: 0 },
      { destination: 0x0ad50000, mask: 0xffffff00 }, // 10.213.0.0/24: another process's bridge
    ];
    assert.deepEqual(pickBridgeNetwork('10.213.0.0/16', routes, new Set(['10.213.1.0/24']), first), { name: 'kbkd502', subnet: '10.213.2.0/24' });
  });
  it('picks among the free ones as told', () => {
    assert.deepEqual(pickBridgeNetwork('10.213.0.0/16', [], new Set(), (n) => n - 1), { name: 'kbkd5ff', subnet: '10.213.255.0/24' });
  });
  it('answers null when a route covers the whole subnet', () => {
    assert.equal(pickBridgeNetwork('10.213.0.0/22', [{ destination: 0x0ad50000, mask: 0xffff0000 }], new Set(), first), null);
    assert.equal(pickBridgeNetwork('10.213.0.0/24', [], new Set(['10.213.0.0/24']), first), null);
  });
});
