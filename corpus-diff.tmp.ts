import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { bakeImage } from './src/convert/bake.js';
import { parseManifest, type ImageManifest } from './src/oci/manifest.js';
import { ext4Tree, fsck, hostTree, linkGroups, run, summarize } from './test/bake-helpers.js';
const name = process.argv[2];
const dir = `/tmp/corpus/${name}`;
const tmp = await mkdtemp('/tmp/cdiff-');
const index = JSON.parse(await readFile(`${dir}/index.json`, 'utf8'));
const b = (d: string) => path.join(dir, 'blobs', ...d.split(':'));
const manifest = parseManifest(await readFile(b(index.manifests[0].digest)), index.manifests[0].mediaType) as ImageManifest;
const r = await bakeImage({ manifest, configBytes: await readFile(b(manifest.config.digest)), openBlob: async (d) => createReadStream(b(d)), workDir: tmp + '/w', outputDir: tmp + '/o' });
console.log('fsck clean', fsck(r.diskPath).clean, r.diskSizeBytes);
const u = run('umoci', ['unpack', '--image', `${dir}:1`, tmp + '/bundle']);
if (u.status) console.log(u.stderr);
const k = summarize(ext4Tree(r.diskPath, tmp + '/s'), { mtimes: true });
const h = summarize(hostTree(tmp + '/bundle/rootfs'), { mtimes: true });
let diffs = 0;
for (const [p, v] of h) if (k.get(p) !== v) { if (diffs++ < 15) console.log('DIFF', JSON.stringify(p), '\n  umoci', v, '\n  kiln ', k.get(p)); }
for (const [p, v] of k) if (!h.has(p)) { if (diffs++ < 30) console.log('EXTRA in kiln', p, v); }
console.log('entries', h.size, k.size, 'diffs', diffs);
console.log('linkgroups equal', JSON.stringify(linkGroups(ext4Tree(r.diskPath, tmp + '/s2'))) === JSON.stringify(linkGroups(hostTree(tmp + '/bundle/rootfs'))));
await rm(tmp, { recursive: true, force: true });
