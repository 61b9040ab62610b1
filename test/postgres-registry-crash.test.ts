// test/registry-crash.test.ts again, with every server on PostgreSQL (a throwaway cluster, one database per data directory).
process.env.KILN_TEST_DATABASE = 'postgres';
await import('./registry-crash.test.js');
