// test/gc-concurrency.test.ts again, with every server on PostgreSQL (a throwaway cluster, one database per data directory).
process.env.KILN_TEST_DATABASE = 'postgres';
await import('./gc-concurrency.test.js');
