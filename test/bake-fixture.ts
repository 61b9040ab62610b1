// The image the bake tests share: three layers (gzip, zstd, plain tar) that
// together use every entry kind and layer rule the engine must handle.
import { layerTar, makeImage, type Compression, type LayerEntry, type TestImage } from '../src/convert/testing.js';

/** security.capability v2 granting cap_net_raw and cap_setfcap (bit 31: a byte ≥ 0x80). */
export const CAPABILITY = Buffer.from('0100000200200080000000000000000000000000', 'hex');
export const BINARY_XATTR = Buffer.from([0xff, 0x00, 0x01, 0x80]);
export const LONG_NAME = `data/${'n'.repeat(150)}`;
export const UNICODE_NAME = 'data/with space and ünïcode';

const dir = (name: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({ name, type: 'directory', ...extra });
const file = (name: string, content: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({ name, content, ...extra });
const symlink = (name: string, linkname: string): LayerEntry => ({ name, type: 'symlink', linkname });
const hardlink = (name: string, linkname: string): LayerEntry => ({ name, type: 'link', linkname });

export const LAYER1: LayerEntry[] = [
  dir('./'),
  symlink('bin', 'usr/bin'),
  symlink('lib', 'usr/lib'),
  dir('data/'),
  file('data/notes', 'xattrs here\n', { xattrs: { 'user.comment': 'hello', 'user.bin': BINARY_XATTR } }),
  file(UNICODE_NAME, 'unicode\n'),
  file(LONG_NAME, 'long\n'),
  dir('dev/'),
  dir('etc/'),
  file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n'),
  file('etc/motd', 'welcome\n'),
  dir('etc/skel/'),
  file('etc/skel/.bashrc', 'bashrc\n'),
  file('etc/skel/.profile', 'profile\n'),
  dir('home/'),
  dir('home/user/', { mode: 0o700, uid: 1000, gid: 1000 }),
  file('home/user/notes', 'mine\n', { mode: 0o600, uid: 1000, gid: 1000 }),
  dir('opt/'),
  dir('opt/old/'),
  file('opt/old/a', 'a\n'),
  file('opt/old/b', 'b\n'),
  dir('srv/'),
  dir('srv/empty/'),
  dir('srv/thing/'),
  file('srv/thing/inner', 'inner\n'),
  dir('tmp/', { mode: 0o1777 }),
  dir('usr/'),
  dir('usr/bin/'),
  file('usr/bin/ping', 'ping binary\n', { mode: 0o755, xattrs: { 'security.capability': CAPABILITY } }),
  file('usr/bin/su', 'su binary\n', { mode: 0o4755 }),
  file('usr/bin/wall', 'wall binary\n', { mode: 0o2755, gid: 5 }),
  dir('usr/lib/'),
  file('usr/lib/libfoo.so.1', 'libfoo v1\n'),
  symlink('usr/lib/libfoo.so', 'libfoo.so.1'),
  dir('var/'),
  dir('var/lib/'),
  file('var/lib/x', 'first\n'),
];

export const LAYER2: LayerEntry[] = [
  file('opt/.wh.old', ''),
  file('etc/.wh.motd', ''),
  file('var/lib/.wh.x', ''),
  hardlink('usr/bin/ping6', 'usr/bin/ping'),
  hardlink('usr/lib/libfoo.so.alias', 'usr/lib/libfoo.so'), // a hardlink to a symlink
  file('data/a', 'three names\n'),
  hardlink('data/b', 'data/a'),
  hardlink('data/c', 'data/a'),
  dir('run/'),
  { name: 'run/fifo', type: 'fifo', mode: 0o600 },
  { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
  { name: 'dev/loop0', type: 'block-device', mode: 0o660, gid: 6, devmajor: 7, devminor: 0 },
  file('etc/skel/new', 'new skel\n'),
  file('etc/skel/.wh..wh..opq', ''), // after its sibling: hides only layer 1's skel files
  file('lib/extra.so', 'through the lib symlink\n'),
  file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n', { mode: 0o600 }),
];

export const LAYER3: LayerEntry[] = [
  file('var/lib/x', 'second\n'),
  file('srv/thing', 'now a file\n'),
  symlink('etc/hostname', '../proc/sys/kernel/hostname'),
  file('usr/lib/libfoo.so.1', 'libfoo v2\n'),
];

export const RUN_CONFIG = {
  Entrypoint: ['/usr/local/bin/entry.sh'],
  Cmd: ['serve', '--port', '8080'],
  Env: ['PATH=/usr/bin:/bin', 'MODE=test'],
  WorkingDir: '/srv',
  User: '1000:1000',
  ExposedPorts: { '8080/tcp': {} },
  StopSignal: 'SIGTERM',
  Labels: { 'org.example.kind': 'fixture' },
};

/** The three layers compressed as given (umoci 0.4.7 cannot read zstd). */
export async function fixtureImage(compression: [Compression, Compression, Compression] = ['gzip', 'zstd', 'none']): Promise<TestImage> {
  return makeImage(
    [
      { tar: await layerTar(LAYER1), compression: compression[0] },
      { tar: await layerTar(LAYER2), compression: compression[1] },
      { tar: await layerTar(LAYER3), compression: compression[2] },
    ],
    RUN_CONFIG,
  );
}
