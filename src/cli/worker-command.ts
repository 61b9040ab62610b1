// `kiln worker`: runs bake jobs from the queue of a data directory (and its
// database) without serving HTTP, beside `kiln serve --workers 0` or more of
// its kind.
import type { Command } from 'commander';
import { runWorkerProcess } from '../jobs/run-worker.js';
import { databaseUrlFrom } from '../server/config.js';

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('run queued bakes (sandboxed) for the server of a data directory, without serving HTTP')
    .option('--data-dir <dir>', 'data directory of the server (env KILN_DATA_DIR)', undefined)
    .option('--database-url <url>', 'postgres://… when the server keeps its metadata in PostgreSQL (env KILN_DATABASE_URL)', undefined)
    .option('--log-level <level>', 'trace|debug|info|warn|error (env KILN_LOG_LEVEL)', undefined)
    .action(async (opts: { dataDir?: string; databaseUrl?: string; logLevel?: string }) => {
      await runWorkerProcess({
        dataDir: opts.dataDir ?? process.env.KILN_DATA_DIR ?? './kiln-data',
        databaseUrl: databaseUrlFrom(opts.databaseUrl),
        logLevel: opts.logLevel ?? process.env.KILN_LOG_LEVEL ?? 'info',
        env: process.env,
      });
    });
}
