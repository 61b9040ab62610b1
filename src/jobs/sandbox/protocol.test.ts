import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameParser, frameHeader, LineSplitter, MAX_FRAME_BYTES } from './protocol.js';

/** The stream cut into pieces of every size from 1 to 13 bytes. */
function* pieces(data: Buffer): Generator<Buffer> {
  let size = 1;
  for (let at = 0; at < data.length; at += size, size = (size % 13) + 1) yield data.subarray(at, at + size);
}

describe('FrameParser', () => {
  it('reassembles frames of several streams however the bytes are cut', () => {
    const wire = Buffer.concat([frameHeader(1, 5), Buffer.from('hello'), frameHeader(2, 3), Buffer.from('abc'), frameHeader(1, 0), frameHeader(2, 1), Buffer.from('d'), frameHeader(2, 0)]);
    for (const cut of [[wire], [...pieces(wire)]]) {
      const got: Record<number, string[]> = {};
      const parser = new FrameParser((id, payload) => (got[id] ??= []).push(payload.toString()));
      for (const piece of cut) parser.push(piece);
      // Each stream's bytes in order, then one empty payload: its end.
      for (const [id, text] of [[1, 'hello'], [2, 'abcd']] as const) {
        assert.equal(got[id].join(''), text);
        assert.equal(got[id].at(-1), '');
        assert.equal(got[id].filter((p) => p === '').length, 1);
      }
    }
  });

  it('refuses a frame longer than the limit', () => {
    const parser = new FrameParser(() => {});
    assert.throws(() => parser.push(frameHeader(1, MAX_FRAME_BYTES + 1)), /at most/);
  });
});

describe('LineSplitter', () => {
  it('splits lines however the bytes are cut', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((l) => lines.push(l));
    for (const piece of pieces(Buffer.from('{"a":1}\n{"b":"ü"}\n\nlast\n'))) splitter.push(piece);
    assert.deepEqual(lines, ['{"a":1}', '{"b":"ü"}', '', 'last']);
  });

  it('stops at the first line when asked, and hands back the bytes after it', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((l) => lines.push(l));
    assert.equal(splitter.push(Buffer.from('{"job"'), true), null);
    const rest = splitter.push(Buffer.from(':1}\n\u0000\u0000\n'), true);
    assert.deepEqual(lines, ['{"job":1}']);
    assert.deepEqual(rest, Buffer.from('\u0000\u0000\n'));
  });

  it('refuses a line longer than its limit', () => {
    const splitter = new LineSplitter(() => {}, 10);
    splitter.push(Buffer.from('12345'));
    assert.throws(() => splitter.push(Buffer.from('678901')), /longer than 10 bytes/);
  });
});
