// test/registry-http.test.ts and test/registry-fixtures.test.ts again, with
// every server as Kiln runs at scale: PostgreSQL (a throwaway cluster, one
// database per data directory) and S3 (a real Ceph RGW, one bucket per data
// directory; blob GETs stream through Kiln, see test/helpers/kiln.ts).
import { after, it } from 'node:test';
import { postgresMissing } from './helpers/postgres.js';
import { rgwMissing } from './helpers/rgw.js';

const missing = rgwMissing() ?? postgresMissing();
if (missing) {
  it('the registry suites on PostgreSQL + S3', { skip: missing }, () => undefined);
} else {
  // Before helpers/kiln.js is first loaded: it reads both when it is.
  process.env.KILN_TEST_DATABASE = 'postgres';
  process.env.KILN_TEST_STORE = 's3';
  const { stopTestRgw } = await import('./helpers/kiln.js');
  await import('./registry-http.test.js');
  await import('./registry-fixtures.test.js');
  after(() => stopTestRgw());
}
