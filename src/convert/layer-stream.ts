// Streams one layer: blob bytes → digest check → decompression → diff_id
// check → the consumer, chunk by chunk. Nothing is buffered whole.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseDigest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { layerCompression } from '../oci/media-types.js';
import { createDecompressor } from './decompress.js';
import { BakeError } from './errors.js';

export interface LayerReadOptions {
  open(): Promise<Readable>;
  /** The uncompressed digest from the image config, checked when given. */
  diffId?: string;
  /** Compressed bytes read so far, for progress. */
  onBytes?(n: number): void;
  /** Called synchronously with each decompressed chunk; throwing stops the layer. */
  consume(chunk: Buffer): void;
  signal?: AbortSignal;
}

export async function readLayer(layer: Descriptor, options: LayerReadOptions): Promise<void> {
  const compression = layerCompression(layer.mediaType);
  if (compression === null) throw new BakeError('UNSUPPORTED_LAYER', `layer ${layer.digest} has media type ${layer.mediaType}, which is not a filesystem layer`);
  const blobHash = createHash(parseDigest(layer.digest).algorithm);
  const diffHash = options.diffId ? createHash(parseDigest(options.diffId).algorithm) : null;
  let blobBytes = 0;
  let consumerError: unknown = null;

  const blob = await options.open();
  try {
    await pipeline(
      blob,
      async function* verify(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          blobHash.update(chunk);
          blobBytes += chunk.length;
          options.onBytes?.(chunk.length);
          yield chunk;
        }
      },
      createDecompressor(compression),
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
    throw new BakeError('LAYER_CORRUPT', `layer ${layer.digest} could not be read as ${compression === 'none' ? 'tar' : `${compression}-compressed tar`}: ${(err as Error).message}`, { cause: err });
  }

  const actual = `${parseDigest(layer.digest).algorithm}:${blobHash.digest('hex')}`;
  if (actual !== layer.digest || blobBytes !== layer.size) {
    throw new BakeError('LAYER_DIGEST_MISMATCH', `layer ${layer.digest} is corrupt: its ${blobBytes} bytes hash to ${actual}, but the manifest says ${layer.size} bytes with that digest; push the image again`);
  }
  if (diffHash && options.diffId) {
    const uncompressed = `${parseDigest(options.diffId).algorithm}:${diffHash.digest('hex')}`;
    if (uncompressed !== options.diffId) {
      throw new BakeError('LAYER_DIGEST_MISMATCH', `layer ${layer.digest} decompresses to ${uncompressed}, but the image config lists diff_id ${options.diffId}`);
    }
  }
}
