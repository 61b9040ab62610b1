// `kiln serve`: runs the registry until SIGTERM/SIGINT, then drains and exits 0.
import type { Command } from 'commander';
import { loadConfig } from '../server/config.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the registry and bake service')
    .option('--listen <addr>', 'address to listen on (env KILN_LISTEN)', undefined)
    .option('--data-dir <dir>', 'data directory (env KILN_DATA_DIR)', undefined)
    .option('--database-url <url>', 'postgres://… to keep metadata in PostgreSQL, shared by several kiln processes (env KILN_DATABASE_URL)', undefined)
    .option('--log-level <level>', 'trace|debug|info|warn|error (env KILN_LOG_LEVEL)', undefined)
    .option('--workers <n>', 'bake worker processes to start beside the API; 0 runs the API only (env KILN_WORKERS, default half the cores)', undefined)
    .option('--insecure-no-auth', 'allow KILN_AUTH=off on a non-loopback address (trusted networks only)')
    .action(async (opts: { listen?: string; dataDir?: string; databaseUrl?: string; logLevel?: string; insecureNoAuth?: boolean; workers?: string }) => {
      const config = loadConfig(opts);
      // V8's concurrent marking is turned off in bin/kiln.js, before any module loads.
      // Loaded here, not at the top: `kiln worker` shares this entry point and would carry the whole server in memory.
      const { createKiln } = await import('../server/app.js');
      const kiln = await createKiln(config);
      const url = await kiln.listen();
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        kiln.log.info({ signal }, 'shutting down: draining requests');
        kiln.close().then(
          () => process.exit(0),
          (err) => {
            kiln.log.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      // Announced only once a SIGTERM would drain: supervisors and tests may stop it the moment they read this.
      process.stdout.write(`kiln listening on ${url} (data dir ${kiln.dirs.root}, database ${kiln.stores.backend}, auth ${config.authMode})\n`);
    });
}
