// The sandboxed bake process. It runs the engine (bakeDisk) on a job that
// arrives on stdin and writes the disk into fd 3; it sees no data directory,
// opens no file by name and has no network. Started by sandboxedBake
// (index.ts) through the launcher; `--check` only proves it can start.
import { Readable } from 'node:stream';
import { bakeDisk } from '../../convert/bake.js';
import { BakeError } from '../../convert/errors.js';
import { lowerAutogroup } from './autogroup.js';
import { OUT_OF_DATA, watchDataSegment } from './data-watch.js';
import { FrameParser, LineSplitter, type ChildMessage, type JobHeader } from './protocol.js';

const DISK_FD = 3;
const STREAM_HIGH_WATER = 1024 * 1024;
const PROGRESS_STEP = 1024 * 1024;

function send(message: ChildMessage): void {
  // Pipes are synchronous on Linux: the line is out when this returns.
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function finish(code: number, message: ChildMessage): never {
  send(message);
  process.exit(code);
}

function failure(err: unknown): ChildMessage {
  if (err instanceof BakeError) return { type: 'error', code: err.code, message: err.message };
  return { type: 'error', code: null, message: err instanceof Error ? err.message : String(err) };
}

/** Reads the job line, then demultiplexes blob frames into the streams the engine opened. */
function listen(onHeader: (header: JobHeader) => void): (layer: number) => Readable {
  const input = process.stdin;
  const streams = new Map<number, Readable>();
  let next = 1;
  let header: JobHeader | null = null;
  const lines = new LineSplitter((line) => {
    header = JSON.parse(line) as JobHeader;
  });
  const frames = new FrameParser((id, payload) => {
    const stream = streams.get(id);
    if (!stream) return; // a stream the engine gave up on
    if (payload.length === 0) {
      streams.delete(id);
      stream.push(null);
    } else if (!stream.push(payload)) input.pause();
  });
  input.on('data', (chunk: Buffer) => {
    try {
      let rest: Buffer | null = chunk;
      if (header === null) {
        rest = lines.push(chunk, true);
        if (header === null) return;
        onHeader(header);
      }
      if (rest && rest.length > 0) frames.push(rest);
    } catch (err) {
      finish(1, { type: 'error', code: null, message: `bad input from the worker: ${(err as Error).message}` });
    }
  });
  input.on('end', () => {
    for (const stream of streams.values()) stream.destroy(new Error('the worker closed the layer stream'));
    if (header === null) finish(1, { type: 'error', code: null, message: 'the worker sent no job' });
  });
  return (layer) => {
    const id = next++;
    const stream = new Readable({
      highWaterMark: STREAM_HIGH_WATER,
      read() {
        input.resume();
      },
      destroy(err, callback) {
        streams.delete(id);
        input.resume();
        callback(err);
      },
    });
    streams.set(id, stream);
    send({ type: 'open', stream: id, layer });
    return stream;
  };
}

async function bake(header: JobHeader, open: (layer: number) => Readable): Promise<void> {
  let sent = -Infinity;
  const baked = await bakeDisk({
    manifest: header.manifest,
    configBytes: Buffer.from(header.config, 'base64'),
    limits: header.limits,
    openBlob: async (digest) => {
      const layer = header.manifest.layers.findIndex((l) => l.digest === digest);
      if (layer < 0) throw new Error(`the engine asked for ${digest}, which is not a layer of the image`);
      return open(layer);
    },
    onProgress: (done, total) => {
      if (done - sent < PROGRESS_STEP && done !== total) return;
      sent = done;
      send({ type: 'progress', done, total });
    },
  }, DISK_FD);
  finish(0, { type: 'result', sizeBytes: baked.sizeBytes, document: baked.document as unknown as Record<string, unknown> });
}

lowerAutogroup();
if (process.argv[2] === '--check') {
  finish(0, { type: 'probe', report: { uid: process.getuid?.(), gid: process.getgid?.() } });
} else {
  const open = listen((header) => {
    watchDataSegment(() => {
      process.stderr.write(`${OUT_OF_DATA}\n`);
      process.exit(1);
    });
    bake(header, open).catch((err: unknown) => finish(1, failure(err)));
  });
}
