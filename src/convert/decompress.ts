// Layer decompression as a stream stage. gzip runs in node:zlib (on the libuv
// pool, so it overlaps with unpacking on the main thread). Node 20's zlib has
// no zstd, so zstd layers stream through `zstd -dc` (Debian package `zstd`).
import { spawn } from 'node:child_process';
import { Duplex, PassThrough } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { LayerCompression } from '../oci/media-types.js';

const CHUNK = 256 * 1024;
const MAX_STDERR = 4096;

/** The compression the first bytes show: gzip and zstd by their magic numbers, else a plain tar. */
export function sniffCompression(head: Buffer): LayerCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

export function createDecompressor(compression: LayerCompression): Duplex {
  switch (compression) {
    case 'none':
      return new PassThrough({ highWaterMark: CHUNK });
    case 'gzip':
      return createGunzip({ chunkSize: CHUNK });
    case 'zstd':
      return commandFilter('zstd', ['-d', '-c', '-q']);
  }
}

/**
 * A duplex stream through a child process's stdin → stdout. It ends only
 * after the process exits 0, so a failed decompression is an error, never a
 * short stream; destroying it kills the process.
 */
export function commandFilter(command: string, args: string[]): Duplex {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let exited = false;
  const duplex = new Duplex({
    readableHighWaterMark: CHUNK,
    write(chunk: Buffer, _encoding, callback) {
      if (child.stdin.write(chunk)) callback();
      else child.stdin.once('drain', () => callback());
    },
    final(callback) {
      child.stdin.end(callback);
    },
    read() {
      child.stdout.resume();
    },
    destroy(err, callback) {
      if (!exited) child.kill('SIGKILL');
      callback(err);
    },
  });
  child.stdout.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) child.stdout.pause();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < MAX_STDERR) stderr += chunk.toString('utf8');
  });
  // EPIPE when the process died early: its exit status tells the real story.
  child.stdin.on('error', () => {});
  child.on('error', (err) => duplex.destroy(new Error(`could not run ${command}: ${err.message}`)));
  child.on('close', (code, signal) => {
    exited = true;
    if (code === 0) duplex.push(null);
    else duplex.destroy(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${stderr.trim() || 'no message'}`));
  });
  return duplex;
}
