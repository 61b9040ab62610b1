// Copies a byte range of an open file into a writable (an HTTP response)
// through a small pool of reused buffers.
//
// Piping a file read stream allocates a fresh buffer for every chunk. At pull
// rates that garbage costs the registry more CPU than the copy itself, and on
// a small machine the CPU it burns is taken from the client that is pulling.
// Reusing a buffer is safe only when the destination lets go of a chunk by the
// time it calls the chunk's write callback. An HTTP response or a socket does
// (the callback comes once the kernel has the bytes); a PassThrough does not
// (it keeps the chunk queued for its reader), so any other destination gets
// fresh buffers.
import { close, read } from 'node:fs';
import { ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';

const CHUNK_BYTES = 1024 * 1024;
/** Writes handed to the destination and not yet flushed, per copy: bounds memory, keeps the socket fed. */
const WRITES_IN_FLIGHT = 2;
/** Idle buffers kept for the next copy; more are allocated under load and left to the GC. */
const IDLE_BUFFERS_KEPT = 16;
const idle: Buffer[] = [];

function takeBuffer(recycle: boolean, length: number): Buffer {
  return recycle ? (idle.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES)) : Buffer.allocUnsafe(length);
}

function giveBack(buffer: Buffer): void {
  if (idle.length < IDLE_BUFFERS_KEPT) idle.push(buffer);
}

/**
 * Writes bytes `start` (inclusive) to `end` (exclusive) of `fd` into `dest`,
 * ends `dest` and closes `fd`. A read error or a file shorter than the range
 * destroys `dest` (the client sees a truncated body, never wrong bytes) and
 * rejects. When `dest` closes early (the client went away) the copy stops and
 * resolves.
 */
export function copyFileRange(fd: number, start: number, end: number, dest: Writable): Promise<void> {
  const recycle = dest instanceof ServerResponse || dest instanceof Socket;
  const release = recycle ? giveBack : () => undefined;
  return new Promise((resolve, reject) => {
    let position = start;
    let reading = false;
    let writesInFlight = 0;
    let settled = false;

    let outcome: Error | undefined;
    const closeFile = () => close(fd, () => (outcome ? reject(outcome) : resolve()));
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      outcome = err;
      dest.off('close', onDestClosed);
      if (err) dest.destroy(); // without the error: the caller reports it, the destination need not handle it
      // A read still in flight closes the file when it returns: its descriptor number must not be reused under it.
      if (!reading) closeFile();
    };
    const onDestClosed = () => settle();
    dest.on('close', onDestClosed);

    const step = () => {
      if (settled || reading || writesInFlight >= WRITES_IN_FLIGHT) return;
      if (position >= end) {
        dest.end();
        settle();
        return;
      }
      reading = true;
      const length = Math.min(CHUNK_BYTES, end - position);
      const buffer = takeBuffer(recycle, length);
      read(fd, buffer, 0, length, position, (err, bytesRead) => {
        reading = false;
        if (settled) {
          release(buffer);
          return closeFile();
        }
        if (err) return settle(err);
        if (bytesRead !== length) return settle(new Error(`blob file ends at byte ${position + bytesRead}, before the ${end} bytes its record promises`));
        position += length;
        writesInFlight++;
        dest.write(buffer.length === length ? buffer : buffer.subarray(0, length), (writeErr) => {
          writesInFlight--;
          // A failed write may still be referenced by the destroyed socket: never reuse it.
          if (!writeErr) release(buffer);
          step();
        });
        step();
      });
    };
    step();
  });
}
