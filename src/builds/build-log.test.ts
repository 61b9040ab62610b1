import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BuildLog, followLog, followStoredLog } from './build-log.js';

function collector() {
  const got: Array<[number, string]> = [];
  let ended = 0;
  let resolveEnd!: () => void;
  const endedPromise = new Promise<void>((r) => (resolveEnd = r));
  return {
    got,
    ended: () => ended,
    whenEnded: endedPromise,
    follower: {
      line: (text: string, index: number) => void got.push([index, text]),
      end: () => {
        ended += 1;
        resolveEnd();
      },
    },
  };
}

describe('BuildLog and followLog', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-build-log-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a follower gets every line once, in order, even while lines keep coming during the replay', async () => {
    const file = path.join(dir, 'busy.log');
    const log = await BuildLog.open(file);
    for (let i = 0; i < 5000; i++) log.write(`early ${i}`);
    const c = collector();
    const following = followLog(file, log, c.follower);
    // Lines written while the file is being replayed.
    let n = 0;
    await new Promise<void>((resolve) => {
      const tick = () => {
        log.write(`late ${n++}`);
        if (n < 200) setImmediate(tick);
        else resolve();
      };
      tick();
    });
    await following;
    log.write('last');
    log.end();
    await c.whenEnded;
    assert.equal(c.ended(), 1);
    assert.deepEqual(
      c.got.map(([i]) => i),
      Array.from({ length: 5201 }, (_, i) => i),
    );
    assert.equal(c.got[4999]![1], 'early 4999');
    assert.equal(c.got[5000]![1], 'late 0');
    assert.equal(c.got.at(-1)![1], 'last');
    assert.equal((await readFile(file, 'utf8')).split('\n').length, 5202);
  });

  it('keeps one line one line, and resumes counting in an existing file', async () => {
    const file = path.join(dir, 'resume.log');
    const first = await BuildLog.open(file);
    first.write('one\ntwo\r\nthree');
    const second = await BuildLog.open(file);
    assert.equal(second.count, 1);
    second.write('four');
    assert.equal(await readFile(file, 'utf8'), 'one two three\nfour\n');
  });

  it('an ended log is replayed and ends; stopping a follower stops its lines', async () => {
    const file = path.join(dir, 'ended.log');
    const log = await BuildLog.open(file);
    log.write('a');
    log.write('b');
    log.end();
    log.write('ignored');
    const c = collector();
    await followLog(file, log, c.follower);
    assert.deepEqual(c.got, [
      [0, 'a'],
      [1, 'b'],
    ]);
    assert.equal(c.ended(), 1);

    const live = await BuildLog.open(path.join(dir, 'live.log'));
    const d = collector();
    const stop = await followLog(path.join(dir, 'live.log'), live, d.follower);
    live.write('seen');
    stop();
    live.write('unseen');
    live.end();
    assert.deepEqual(d.got, [[0, 'seen']]);
    assert.equal(d.ended(), 0);
  });

  it('a log file that does not exist yet replays as empty', async () => {
    const c = collector();
    await followLog(path.join(dir, 'missing.log'), null, c.follower);
    assert.deepEqual(c.got, []);
    assert.equal(c.ended(), 1);
  });
});

describe('BuildLog limits and resumption', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-build-log-cap-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('cuts the builder output at the cap, says so once, and still takes Kiln lines', async () => {
    const file = path.join(dir, 'big.log');
    const log = await BuildLog.open(file, { maxBytes: 1000 });
    log.note('==> build started');
    for (let i = 0; i < 1000; i++) log.write(`output line ${i} ${'x'.repeat(50)}`);
    log.note('==> build failed: exit code 1');
    log.end();
    const text = await readFile(file, 'utf8');
    const lines = text.trimEnd().split('\n');
    assert.ok(Buffer.byteLength(text) < 1000 + 300, `${Buffer.byteLength(text)} bytes`);
    assert.equal(lines.filter((l) => l.includes('the log is cut here')).length, 1);
    assert.match(lines.at(-2)!, /^==> the log is cut here at \d+ bytes \(KILN_BUILD_LOG_MAX_BYTES=1000\)/);
    assert.equal(lines.at(-1), '==> build failed: exit code 1');
  });

  it('keeps the cut across a reopen of the file', async () => {
    const file = path.join(dir, 'reopen.log');
    const first = await BuildLog.open(file, { maxBytes: 200 });
    for (let i = 0; i < 20; i++) first.write(`line ${i} ${'y'.repeat(20)}`);
    const before = (await readFile(file, 'utf8')).length;
    const again = await BuildLog.open(file, { maxBytes: 200 });
    again.write('more builder output');
    assert.equal((await readFile(file, 'utf8')).length, before);
    assert.equal(again.count, first.count);
  });

  it('a follower resuming after a line id gets only the lines after it', async () => {
    const file = path.join(dir, 'resume.log');
    const log = await BuildLog.open(file);
    for (let i = 0; i < 5; i++) log.write(`line ${i}`);
    const c = collector();
    await followLog(file, log, c.follower, { after: 2 });
    log.write('line 5');
    log.end();
    await c.whenEnded;
    assert.deepEqual(c.got, [
      [3, 'line 3'],
      [4, 'line 4'],
      [5, 'line 5'],
    ]);
    const ended = collector();
    await followLog(file, null, ended.follower, { after: 4 });
    assert.deepEqual(ended.got, [[5, 'line 5']]);
  });
});

/** Waits until `done()` holds, looking again on every turn of a short timer; fails after a generous while. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !done(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(done(), `gave up waiting for ${what}`);
}

describe('followStoredLog (a build another process runs)', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-stored-log-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives what is there, then what is appended, a partial line once it is whole, and ends after the end line', async () => {
    const file = path.join(dir, 'run.log');
    await writeFile(file, 'one\ntwo\n');
    let ended = false;
    const c = collector();
    const stop = await followStoredLog(file, c.follower, { pollMs: 5, ended: async () => ended });
    assert.deepEqual(c.got, [[0, 'one'], [1, 'two']]);
    await appendFile(file, 'thr');
    await appendFile(file, 'ee\n\u00e9t\u00e9 ');
    await until(() => c.got.length === 3, 'the third line');
    assert.deepEqual(c.got[2], [2, 'three']);
    // A two-byte character split across two appends comes out whole.
    const bytes = Buffer.from('\u00fcber\n');
    await appendFile(file, bytes.subarray(0, 1));
    await appendFile(file, bytes.subarray(1));
    await until(() => c.got.length === 4, 'the fourth line');
    assert.deepEqual(c.got[3], [3, '\u00e9t\u00e9 \u00fcber']);
    // The status says ended before the end line is written (as finish() does it): the stream waits for the line.
    ended = true;
    await appendFile(file, '==> build failed: exit code 1\n');
    await c.whenEnded;
    assert.equal(c.ended(), 1);
    assert.deepEqual(c.got.at(-1), [4, '==> build failed: exit code 1']);
    stop();
  });

  it('skips the lines a resuming client has, and waits for a log that does not exist yet', async () => {
    const file = path.join(dir, 'later.log');
    let ended = false;
    const c = collector();
    await followStoredLog(file, c.follower, { pollMs: 5, after: 1, ended: async () => ended });
    assert.deepEqual(c.got, []);
    await writeFile(file, 'a\nb\nc\n');
    await until(() => c.got.length === 1, 'the line after the resumed one');
    assert.deepEqual(c.got, [[2, 'c']]);
    ended = true;
    await appendFile(file, '==> build ready\n');
    await c.whenEnded;
    assert.deepEqual(c.got, [[2, 'c'], [3, '==> build ready']]);
  });

  it('ends a build that ended without an end line (its process died) after a few more reads', async () => {
    const file = path.join(dir, 'died.log');
    await writeFile(file, 'only\n');
    const c = collector();
    await followStoredLog(file, c.follower, { pollMs: 2, settleMs: 20, ended: async () => true });
    await c.whenEnded;
    assert.deepEqual(c.got, [[0, 'only']]);
  });

  it('stops reading when told to, and ends the stream when reading the status fails', async () => {
    const file = path.join(dir, 'stop.log');
    await writeFile(file, 'x\n');
    let asked = 0;
    const c = collector();
    const stop = await followStoredLog(file, c.follower, { pollMs: 2, ended: async () => (asked++, false) });
    stop();
    const seen = asked;
    await appendFile(file, 'y\n');
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(asked, seen, 'no more reads after stop');
    assert.deepEqual(c.got, [[0, 'x']]);
    const errors: unknown[] = [];
    const d = collector();
    await followStoredLog(file, d.follower, {
      pollMs: 2,
      ended: async () => {
        throw new Error('database gone');
      },
      onError: (err) => errors.push(err),
    });
    await d.whenEnded;
    assert.equal(errors.length, 1);
  });
});
