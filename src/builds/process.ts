// Running builder commands: output as lines, cancellation that takes down the
// whole process group, and nothing left running once the command is over.
import { execFile, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { promisify } from 'node:util';
import { BuildError } from './errors.js';

export interface CommandSpec {
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  signal: AbortSignal;
  onLine: (line: string) => void;
  /** How long a cancelled command gets between SIGTERM and SIGKILL. */
  killGraceMs?: number;
}

export interface CommandOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines of output, to explain a failure. */
  tail: string[];
}

const TAIL_LINES = 20;
const DEFAULT_KILL_GRACE_MS = 5_000;

/** Longest line passed on as one; a longer one (output without newlines) goes on in pieces of this size. */
export const MAX_LINE_CHARS = 64 * 1024;

/** Splits a byte stream into lines; keeps a partial last line until more arrives (at most MAX_LINE_CHARS of it). */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  push(chunk: Buffer): string[] {
    return this.take(this.pending + this.decoder.write(chunk));
  }

  end(): string[] {
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    return rest === '' ? [] : [rest.replace(/\r$/, '')];
  }

  private take(text: string): string[] {
    const parts = text.split('\n');
    let rest = parts.pop() ?? '';
    const lines = parts.map((line) => line.replace(/\r$/, ''));
    while (rest.length > MAX_LINE_CHARS) {
      lines.push(rest.slice(0, MAX_LINE_CHARS));
      rest = rest.slice(MAX_LINE_CHARS);
    }
    this.pending = rest;
    return lines;
  }
}

/**
 * Runs a command in its own process group and streams stdout and stderr as
 * lines. Resolves with the exit status (a non-zero exit is not an error here);
 * rejects with a `cancelled` BuildError when `signal` aborts, after the group is gone.
 */
export function runCommand(spec: CommandSpec): Promise<CommandOutcome> {
  if (spec.signal.aborted) return Promise.reject(cancelled(spec.command, spec.signal));
  return new Promise((resolve, reject) => {
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      // A new session and process group, so one kill reaches every descendant.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const tail: string[] = [];
    const emit = (line: string) => {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      spec.onLine(line);
    };
    for (const stream of [child.stdout, child.stderr]) {
      const splitter = new LineSplitter();
      stream.on('data', (chunk: Buffer) => splitter.push(chunk).forEach(emit));
      stream.on('end', () => splitter.end().forEach(emit));
    }

    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      killGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), spec.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
    };
    spec.signal.addEventListener('abort', onAbort, { once: true });

    // Whatever the leader left behind in its group must not outlive it (and would keep the pipes open).
    child.on('exit', () => killGroup(child.pid, 'SIGKILL'));
    child.on('error', (err) => {
      spec.signal.removeEventListener('abort', onAbort);
      reject(new BuildError('build-failed', `could not start ${spec.command}: ${err.message}`, { cause: err }));
    });
    child.on('close', (exitCode, signal) => {
      spec.signal.removeEventListener('abort', onAbort);
      clearTimeout(killTimer);
      if (spec.signal.aborted) reject(cancelled(spec.command, spec.signal));
      else resolve({ exitCode, signal, tail });
    });
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone, which is what we want.
  }
}

function cancelled(command: string, signal: AbortSignal): BuildError {
  const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? 'aborted');
  return new BuildError('cancelled', `${path.basename(command)} stopped: ${reason}`, { cause: signal.reason });
}

/** The error for a command that exited unsuccessfully, quoting its last words. */
export function commandFailed(what: string, outcome: CommandOutcome): BuildError {
  const status = outcome.exitCode !== null ? `exit code ${outcome.exitCode}` : `signal ${outcome.signal}`;
  const last = outcome.tail.filter((l) => l.trim() !== '').slice(-3).join(' | ');
  return new BuildError('build-failed', `${what} failed (${status})${last ? `: ${last}` : ''}`);
}

/** Runs a short command and returns its stdout (for `--version` and the like). */
export async function captureCommand(command: string, args: string[], timeoutMs = 10_000): Promise<string> {
  const { stdout } = await promisify(execFile)(command, args, { timeout: timeoutMs, encoding: 'utf8' });
  return stdout;
}

/** Whether an executable named `name` is in one of PATH's directories. */
export async function isOnPath(name: string, pathVariable = process.env.PATH ?? ''): Promise<boolean> {
  for (const dir of pathVariable.split(path.delimiter)) {
    if (dir === '') continue;
    try {
      await access(path.join(dir, name), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}
