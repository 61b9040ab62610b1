import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { commandFilter, createDecompressor, sniffCompression } from './decompress.js';
import { compress } from './testing.js';

async function through(stream: ReturnType<typeof createDecompressor>, input: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const source = Readable.from((function* () { for (let i = 0; i < input.length; i += 7000) yield input.subarray(i, i + 7000); })());
  await pipeline(source, stream, async (out: AsyncIterable<Buffer>) => {
    for await (const c of out) chunks.push(c);
  });
  return Buffer.concat(chunks);
}

describe('createDecompressor', () => {
  const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(700_000, 'a')]);
  for (const kind of ['none', 'gzip', 'zstd'] as const) {
    it(`round-trips ${kind}`, async () => {
      assert.deepEqual(await through(createDecompressor(kind), compress(data, kind)), data);
    });
  }

  it('fails on corrupt zstd instead of ending short', async () => {
    const bad = compress(data, 'zstd');
    bad.fill(0x33, 100, 200);
    await assert.rejects(through(createDecompressor('zstd'), bad), /zstd -d -c -q failed \(exit 1\)/);
  });

  it('fails on corrupt gzip', async () => {
    await assert.rejects(through(createDecompressor('gzip'), Buffer.from('not gzip')), /incorrect header check/);
  });

  it('reports a tool that cannot be started', async () => {
    await assert.rejects(through(commandFilter('kiln-no-such-tool', []), Buffer.from('x')), /could not run kiln-no-such-tool/);
  });
});

describe('sniffCompression', () => {
  const table: Array<[string, Buffer, string]> = [
    ['gzip magic', Buffer.from([0x1f, 0x8b, 8, 0]), 'gzip'],
    ['zstd magic', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0]), 'zstd'],
    ['a tar header', Buffer.from('etc/\0\0\0\0'), 'none'],
    ['too short to tell', Buffer.from([0x1f]), 'none'],
    ['empty', Buffer.alloc(0), 'none'],
  ];
  for (const [name, head, expected] of table) it(name, () => assert.equal(sniffCompression(head), expected));
});
