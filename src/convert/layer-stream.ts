// Streams one layer: blob bytes → digest check → decompression → diff_id
// check → the consumer, chunk by chunk. Nothing is buffered whole.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseDigest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { layerCompression } from '../oci/media-types.js';
import { createDecompressor, sniffCompression } from './decompress.js';
import { BakeError } from './errors.js';

export interface LayerReadOptions {
  open(): Promise<Readable>;
  /** The uncompressed digest from the image config, checked when given. */
  diffId?: string;
  /** Compressed bytes read so far, for progress. */
  onBytes?(n: number): void;
  /** Called synchronously with each decompressed chunk; throwing stops the layer. */
  consume(chunk: Buffer): void;
  /** Called at the end, once the blob digest is verified and before the diff_id check. */
  finish?(): void;
  signal?: AbortSignal;
}

export async function readLayer(layer: Descriptor, options: LayerReadOptions): Promise<void> {
  const compression = layerCompression(layer.mediaType);
  if (compression === null) throw new BakeError('UNSUPPORTED_LAYER', `layer ${layer.digest} has media type ${layer.mediaType}, which is not a filesystem layer`);
  const blobHash = createHash(parseDigest(layer.digest).algorithm);
  const diffHash = options.diffId ? createHash(parseDigest(options.diffId).algorithm) : null;
  let blobBytes = 0;
  let consumerError: unknown = null;

  let actual = compression;
  try {
    const { head, source } = await peek(await options.open(), 4);
    // Like containerd, trust the bytes over the media type: some tools label plain tars as gzip.
    actual = sniffCompression(head);
    await pipeline(
      source,
      async function* verify(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          blobHash.update(chunk);
          blobBytes += chunk.length;
          options.onBytes?.(chunk.length);
          yield chunk;
        }
      },
      createDecompressor(actual),
      async function unpack(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          diffHash?.update(chunk);
          try {
            options.consume(chunk);
          } catch (err) {
            consumerError = err;
            throw err;
          }
        }
      },
      { signal: options.signal },
    );
  } catch (err) {
    if (consumerError !== null || options.signal?.aborted || err instanceof BakeError) throw err;
    // Undecompressable bytes usually mean a damaged blob: say so when the digest agrees.
    const { digest, bytes } = await hashBlob(layer, options);
    if (digest !== layer.digest || bytes !== layer.size) throw digestMismatch(layer, digest, bytes);
    const as = actual === 'none' ? 'tar' : `${actual}-compressed tar`;
    throw new BakeError('LAYER_CORRUPT', `layer ${layer.digest} (${layer.mediaType}) could not be read as ${as}: ${(err as Error).message}`, { cause: err });
  }

  const blobDigest = `${parseDigest(layer.digest).algorithm}:${blobHash.digest('hex')}`;
  if (blobDigest !== layer.digest || blobBytes !== layer.size) throw digestMismatch(layer, blobDigest, blobBytes);
  // A damaged blob is the root cause of everything after it; a bad tar comes before a wrong diff_id.
  options.finish?.();
  if (diffHash && options.diffId) {
    const uncompressed = `${parseDigest(options.diffId).algorithm}:${diffHash.digest('hex')}`;
    if (uncompressed !== options.diffId) {
      throw new BakeError('LAYER_DIGEST_MISMATCH', `layer ${layer.digest} decompresses to ${uncompressed}, but the image config lists diff_id ${options.diffId}`);
    }
  }
}

function digestMismatch(layer: Descriptor, actual: string, bytes: number): BakeError {
  return new BakeError('LAYER_DIGEST_MISMATCH', `layer ${layer.digest} is corrupt: its ${bytes} bytes hash to ${actual}, but the manifest says ${layer.size} bytes with digest ${layer.digest}; push the image again`);
}

async function hashBlob(layer: Descriptor, options: LayerReadOptions): Promise<{ digest: string; bytes: number }> {
  const algorithm = parseDigest(layer.digest).algorithm;
  const hash = createHash(algorithm);
  let bytes = 0;
  for await (const chunk of await options.open()) {
    options.signal?.throwIfAborted();
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { digest: `${algorithm}:${hash.digest('hex')}`, bytes };
}

/** Reads at least `n` bytes (or all there is) and returns them with a stream of the whole blob. */
async function peek(blob: Readable, n: number): Promise<{ head: Buffer; source: Readable }> {
  const chunks = blob[Symbol.asyncIterator]();
  const first: Buffer[] = [];
  let length = 0;
  while (length < n) {
    const next = await chunks.next();
    if (next.done) break;
    first.push(next.value as Buffer);
    length += (next.value as Buffer).length;
  }
  async function* all() {
    yield* first;
    // for-await returns the iterator early when the pipeline stops, which destroys the blob stream.
    for await (const chunk of { [Symbol.asyncIterator]: () => chunks }) yield chunk as Buffer;
  }
  return { head: Buffer.concat(first), source: Readable.from(all(), { objectMode: false }) };
}
