import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { BuildError } from './errors.js';
import { commandFailed, isOnPath, LineSplitter, MAX_LINE_CHARS, runCommand } from './process.js';

/** True once `pid` is gone or a zombie (dead, waiting for its new parent to reap it). */
async function exitsWithin(pid: number, ms: number): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; ) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
    if (stat === null || /^\d+ \(.*\) Z/.test(stat)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

describe('LineSplitter', () => {
  const table: Array<{ name: string; chunks: string[][]; want: string[] }> = [
    { name: 'whole lines', chunks: [['a\nb\n']], want: ['a', 'b'] },
    { name: 'a line split across chunks', chunks: [['he'], ['llo\nwor'], ['ld']], want: ['hello', 'world'] },
    { name: 'CRLF endings', chunks: [['a\r\nb\r\n']], want: ['a', 'b'] },
    { name: 'empty lines kept', chunks: [['a\n\nb\n']], want: ['a', '', 'b'] },
  ];
  for (const row of table) {
    it(row.name, () => {
      const splitter = new LineSplitter();
      const lines = row.chunks.flatMap(([c]) => splitter.push(Buffer.from(c!)));
      assert.deepEqual([...lines, ...splitter.end()], row.want);
    });
  }

  it('keeps a multi-byte character split between chunks', () => {
    const bytes = Buffer.from('→ done\n');
    const splitter = new LineSplitter();
    const lines = [...splitter.push(bytes.subarray(0, 1)), ...splitter.push(bytes.subarray(1)), ...splitter.end()];
    assert.deepEqual(lines, ['→ done']);
  });

  it('passes output without newlines on in pieces instead of holding it all', () => {
    const splitter = new LineSplitter();
    const lines: string[] = [];
    for (let i = 0; i < 10; i++) lines.push(...splitter.push(Buffer.alloc(MAX_LINE_CHARS / 2, 'x')));
    assert.equal(lines.length, 4, 'whole pieces are passed on as they fill');
    assert.ok(lines.every((l) => l.length === MAX_LINE_CHARS));
    assert.equal([...splitter.end()].join('').length, MAX_LINE_CHARS);
  });
});

describe('runCommand', () => {
  it('streams stdout and stderr as lines and reports the exit code', async () => {
    const lines: string[] = [];
    const outcome = await runCommand({
      command: 'sh',
      args: ['-c', 'echo out; echo err >&2; exit 3'],
      signal: new AbortController().signal,
      onLine: (l) => lines.push(l),
    });
    assert.equal(outcome.exitCode, 3);
    assert.deepEqual(lines.sort(), ['err', 'out']);
    assert.match(commandFailed('sh', outcome).message, /^sh failed \(exit code 3\): (out \| err|err \| out)$/);
  });

  it('kills the whole process group on abort', async () => {
    const controller = new AbortController();
    let grandchild = 0;
    const run = runCommand({
      command: 'sh',
      args: ['-c', 'sleep 60 & echo "pid $!"; wait'],
      signal: controller.signal,
      killGraceMs: 1_000,
      onLine: (line) => {
        const m = /^pid (\d+)$/.exec(line);
        if (m) {
          grandchild = Number(m[1]);
          controller.abort(new Error('cancelled by test'));
        }
      },
    });
    await assert.rejects(run, (err: unknown) => err instanceof BuildError && err.kind === 'cancelled' && /cancelled by test/.test(err.message));
    assert.ok(grandchild > 0);
    assert.ok(await exitsWithin(grandchild, 2_000), `process ${grandchild} still runs`);
  });

  it('leaves no background process behind after a normal exit', async () => {
    let background = 0;
    await runCommand({
      command: 'sh',
      args: ['-c', 'sleep 60 >/dev/null 2>&1 & echo "pid $!"'],
      signal: new AbortController().signal,
      onLine: (line) => {
        const m = /^pid (\d+)$/.exec(line);
        if (m) background = Number(m[1]);
      },
    });
    assert.ok(background > 0);
    assert.ok(await exitsWithin(background, 2_000), `process ${background} still runs`);
  });

  it('does not start when already aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('too late'));
    await assert.rejects(
      runCommand({ command: 'sh', args: ['-c', 'exit 0'], signal: controller.signal, onLine: () => {} }),
      (err: unknown) => err instanceof BuildError && err.kind === 'cancelled',
    );
  });

  it('reports a missing command as a failed build', async () => {
    await assert.rejects(
      runCommand({ command: 'kiln-no-such-builder', args: [], signal: new AbortController().signal, onLine: () => {} }),
      (err: unknown) => err instanceof BuildError && err.kind === 'build-failed' && /could not start kiln-no-such-builder/.test(err.message),
    );
  });
});

describe('isOnPath', () => {
  it('finds sh and not a made-up name', async () => {
    assert.equal(await isOnPath('sh'), true);
    assert.equal(await isOnPath('kiln-no-such-builder'), false);
    assert.equal(await isOnPath('sh', '/nonexistent'), false);
  });
});
