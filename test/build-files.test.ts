// BuildFiles (src/store/build-files.ts) on both FileStore backends: the data
// directory and S3 on a real Ceph RGW. The same cases on each: publishing a
// source, the runner's local copy, the running log's local file and its
// publishing, ranged log reads, result.json, the ids that have files with
// their newest time, and removal counting the bytes.
import assert from 'node:assert/strict';
import { appendFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BuildFiles } from '../src/store/build-files.js';
import type { FileStore } from '../src/store/file-store.js';
import { FsFileStore } from '../src/store/fs/file-store.js';
import { S3FileStore } from '../src/store/s3/file-store.js';
import { tempDir } from './helpers/kiln.js';
import { rgwMissing, s3Settings, startRgw, type Rgw } from './helpers/rgw.js';

function buildFilesSuite(name: string, open: () => Promise<FileStore>, inPlace: boolean): void {
  let scratch: string;
  let store: FileStore;
  let files: BuildFiles;
  before(async () => {
    scratch = await tempDir(`kiln-build-files-${name}-`);
    store = await open();
    files = new BuildFiles(store, path.join(scratch, 'build-logs'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it(`${name}: ${inPlace ? 'appends the log in place' : 'publishes the log from a local copy'}`, () => {
    assert.equal(files.logsInPlace, inPlace);
  });

  it(`${name}: publishes a source, hands the runner a local file of it, and says when it is gone`, async () => {
    const local = path.join(scratch, 'upload');
    await writeFile(local, 'gzip bytes');
    await files.publishSource('b1', local);
    assert.equal((await store.readBytes('builds/b1/source.tar.gz'))?.toString(), 'gzip bytes');
    const workDir = path.join(scratch, 'work-b1');
    await mkdir(workDir);
    const given = await files.localSource('b1', workDir);
    assert.ok(given !== null);
    assert.equal((await readFile(given)).toString(), 'gzip bytes');
    assert.equal(await files.localSource('missing', workDir), null);
  });

  it(`${name}: the running log is a local file; followers read the stored log by byte range`, async () => {
    await store.writeBytes('builds/b2/build.log', Buffer.from('first\n'));
    const file = await files.openLocalLog('b2');
    assert.equal((await readFile(file)).toString(), 'first\n', 'the stored lines come first');
    await appendFile(file, 'second\n');
    await files.publishLog('b2');
    assert.equal((await files.readLog('b2', 0, 1024))?.toString(), 'first\nsecond\n');
    assert.equal((await files.readLog('b2', 6, 3))?.toString(), 'sec');
    assert.equal((await files.readLog('b2', 13, 1024))?.length, 0, 'nothing past the end');
    assert.equal(await files.readLog('none', 0, 1024), null);
    const download = await files.logDownload('b2');
    assert.ok(download !== null);
    if ('redirect' in download) assert.equal(await (await fetch(download.redirect)).text(), 'first\nsecond\n');
    else assert.equal((await download.body.toArray()).join(''), 'first\nsecond\n');
    assert.equal(await files.logDownload('none'), null);
    await files.dropLocalLog('b2');
    assert.equal((await files.readLog('b2', 0, 1024))?.toString(), 'first\nsecond\n', 'dropping the local copy keeps the stored log');
  });

  it(`${name}: lists the ids with files and their newest time; removal takes every file and counts its bytes`, async () => {
    await files.writeResult('b3', Buffer.from('{"status":"ready"}\n'));
    await store.writeBytes('builds/b3/build.log', Buffer.from('12345'));
    assert.equal((await files.readResult('b3'))?.toString(), '{"status":"ready"}\n');
    const listed = await files.ids();
    assert.deepEqual(listed.map((e) => e.id).sort(), ['b1', 'b2', 'b3']);
    const b3 = listed.find((e) => e.id === 'b3')!;
    const times: number[] = [];
    for await (const file of store.list('builds/b3/')) times.push(file.modifiedAt.getTime());
    assert.equal(times.length, 2);
    const newest = Math.max(...times);
    assert.equal(b3.modifiedAt.getTime(), newest);
    assert.equal(await files.remove('b3'), 19 + 5);
    assert.deepEqual((await files.ids()).map((e) => e.id).sort(), ['b1', 'b2']);
    assert.equal(await files.remove('b3'), 0, 'removing again finds nothing');
  });
}

describe('BuildFiles on the data directory', () => {
  let root = '';
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });
  buildFilesSuite(
    'filesystem',
    async () => {
      root = await tempDir('kiln-build-files-fs-');
      const store = new FsFileStore(root, { durable: false });
      await store.init();
      return store;
    },
    true,
  );
  it('filesystem: only the server user may read what it stored (directories 0700, files 0600)', async () => {
    const open: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (((await stat(full)).mode & 0o077) !== 0) open.push(path.relative(root, full));
        if (entry.isDirectory()) await walk(full);
      }
    };
    await walk(path.join(root, 'builds'));
    assert.deepEqual(open, []);
  });
});

describe('BuildFiles on S3 (Ceph RGW)', { skip: rgwMissing() ?? false }, () => {
  let rgw: Rgw;
  before(async () => {
    rgw = await startRgw();
  });
  after(async () => {
    await rgw?.stop();
  });
  buildFilesSuite(
    's3',
    async () => {
      const store = new S3FileStore(rgw.client(), s3Settings(await rgw.createBucket()));
      await store.init();
      return store;
    },
    false,
  );
});
