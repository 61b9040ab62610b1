// The `kiln` command line.
import { Command } from 'commander';
import { registerBuildCommand } from './build-command.js';
import { registerGcCommands } from './gc-commands.js';
import { registerImageCommands } from './image-commands.js';
import { databaseUrlFrom } from '../server/config.js';
import { registerServeCommand } from './serve-command.js';
import { registerTokenCommands } from './token-command.js';
import { registerWorkerCommand } from './worker-command.js';

const program = new Command();
program.name('kiln').description('OCI registry that bakes images into microVM disks, with BuildKit builds');
registerServeCommand(program);
registerWorkerCommand(program);
registerImageCommands(program);
registerBuildCommand(program);
registerGcCommands(program);
// Each command loads what it needs when it runs: a worker process must not carry the server's modules.
registerTokenCommands(program, async ({ dataDir, databaseUrl, url, init }) => {
  const { openLocalAuth, openRemoteAuth } = await import('./local-auth.js');
  return url ? openRemoteAuth(url) : openLocalAuth(dataDir || process.env.KILN_DATA_DIR || './kiln-data', { init, databaseUrl: databaseUrlFrom(databaseUrl) });
});

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`kiln: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
