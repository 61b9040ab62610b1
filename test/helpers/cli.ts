// Runs the `kiln` CLI as a child process, like spawnKiln does for `kiln serve`:
// the compiled bin when the tests run from dist/, the sources through tsx otherwise.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './paths.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runKilnCli(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliResult> {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fromSource ? ['--import', import.meta.resolve('tsx'), path.join(repoRoot, 'src', 'cli', 'main.ts')] : [path.join(repoRoot, 'bin', 'kiln.js')];
  const proc = spawn(process.execPath, [...entry, ...args], { env: { ...process.env, ...env }, cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`kiln ${args.join(' ')} did not finish in ${timeoutMs} ms: ${stdout}${stderr}`));
    }, timeoutMs);
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
