// The `kiln` command line.
import { Command } from 'commander';
import { registerServeCommand } from './serve-command.js';

const program = new Command();
program.name('kiln').description('OCI registry that bakes images into microVM disks, with BuildKit builds');
registerServeCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`kiln: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
