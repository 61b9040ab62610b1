// A streaming tar reader (POSIX ustar, pax, GNU long names) that hands entries
// and their content to a synchronous handler, chunk by chunk.
//
// Written here rather than taken from tar-stream because tar-stream decodes
// every pax value as UTF-8 text: binary xattr values such as
// `security.capability` come out mangled, and pax uid/gid/mtime are dropped.
// Names and link targets are kept as byte strings (one char per byte,
// "latin1") so non-UTF-8 names survive unchanged.

const BLOCK = 512;
/** Largest pax or GNU long-name header accepted. */
const MAX_META_BYTES = 8 * 1024 * 1024;

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'char-device' | 'block-device' | 'fifo';

export interface TarEntry {
  /** Byte string of the name as stored (pax `path` and GNU long names applied). */
  name: string;
  type: TarEntryType;
  /** Permission bits including setuid, setgid and sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content that follow (0 for everything but files). */
  size: number;
  /** Seconds since the epoch, possibly fractional (pax). */
  mtime: number;
  /** Byte string: symlink target or hardlink target name. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from pax `SCHILY.xattr.*` / `LIBARCHIVE.xattr.*` records. */
  xattrs: ReadonlyMap<string, Buffer>;
}

export interface TarHandler {
  entry(entry: TarEntry): void;
  /** Content of the current entry; slices may be views into the caller's chunk. */
  data(chunk: Buffer): void;
  entryEnd(): void;
}

export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarFormatError';
  }
}

type BodyKind = 'entry' | 'meta' | 'skip';
type MetaKind = 'pax' | 'global-pax' | 'long-name' | 'long-link';

export class TarReader {
  private state: 'header' | 'body' | 'padding' | 'done' = 'header';
  private readonly header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  private remaining = 0;
  private padding = 0;
  private bodyKind: BodyKind = 'skip';
  private metaKind: MetaKind = 'pax';
  private metaChunks: Buffer[] = [];
  private globalPax = new Map<string, Buffer>();
  private pax: Map<string, Buffer> | null = null;
  private longName: string | null = null;
  private longLink: string | null = null;
  private entryName = '';

  constructor(private readonly handler: TarHandler) {}

  write(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      switch (this.state) {
        case 'done':
          return; // anything after the end-of-archive block is padding
        case 'header': {
          if (this.headerFill === 0 && chunk.length - off >= BLOCK) {
            this.onHeader(chunk.subarray(off, off + BLOCK));
            off += BLOCK;
          } else {
            const n = Math.min(BLOCK - this.headerFill, chunk.length - off);
            chunk.copy(this.header, this.headerFill, off, off + n);
            this.headerFill += n;
            off += n;
            if (this.headerFill === BLOCK) {
              this.headerFill = 0;
              this.onHeader(this.header);
            }
          }
          break;
        }
        case 'body': {
          const n = Math.min(this.remaining, chunk.length - off);
          this.onBody(chunk.subarray(off, off + n));
          off += n;
          this.remaining -= n;
          if (this.remaining === 0) this.finishBody();
          break;
        }
        case 'padding': {
          const n = Math.min(this.padding, chunk.length - off);
          off += n;
          this.padding -= n;
          if (this.padding === 0) this.state = 'header';
          break;
        }
      }
    }
  }

  /** Call when the input ends. Missing end-of-archive blocks and missing final padding are tolerated (umoci writes both). */
  end(): void {
    if (this.state === 'body') {
      throw new TarFormatError(`archive ends inside the content of ${JSON.stringify(this.entryName)} (${this.remaining} bytes missing)`);
    }
    if (this.state === 'header' && this.headerFill > 0) throw new TarFormatError('archive ends inside a header block');
    if (this.state === 'header' && (this.pax || this.longName !== null || this.longLink !== null)) {
      throw new TarFormatError('archive ends after an extended header with no entry');
    }
  }

  private onHeader(block: Buffer): void {
    if (isZeroBlock(block)) {
      this.state = 'done';
      return;
    }
    verifyChecksum(block);
    const typeflag = String.fromCharCode(block[156]);
    const size = readNumber(block, 124, 12, 'size');
    switch (typeflag) {
      case 'x':
      case 'g':
      case 'L':
      case 'K':
        if (size > MAX_META_BYTES) throw new TarFormatError(`extended header of ${size} bytes is larger than ${MAX_META_BYTES}`);
        this.metaKind = typeflag === 'x' ? 'pax' : typeflag === 'g' ? 'global-pax' : typeflag === 'L' ? 'long-name' : 'long-link';
        this.metaChunks = [];
        return this.startBody('meta', size);
      case 'V': // volume label: not a file
        return this.startBody('skip', size);
    }
    const { entry, bodySize } = this.buildEntry(block, typeflag, size);
    this.entryName = entry.name;
    this.handler.entry(entry);
    if (typeflag === 'D') {
      // A GNU dumpdir is a directory whose content lists its members: not file data.
      this.handler.entryEnd();
      this.startBody('skip', bodySize);
    } else {
      this.startBody('entry', entry.size);
    }
  }

  private buildEntry(block: Buffer, typeflag: string, headerSize: number): { entry: TarEntry; bodySize: number } {
    const pax = this.pax ? new Map([...this.globalPax, ...this.pax]) : this.globalPax;
    this.pax = null;
    let name = readString(block, 0, 100);
    if (block.toString('latin1', 257, 263) === 'ustar\0' && block[345] !== 0) {
      name = `${readString(block, 345, 155)}/${name}`;
    }
    let linkname = readString(block, 157, 100);
    if (this.longName !== null) name = this.longName;
    if (this.longLink !== null) linkname = this.longLink;
    this.longName = this.longLink = null;

    const type = entryType(typeflag, name);
    const paxPath = pax.get('path');
    if (paxPath?.length) name = paxPath.toString('latin1');
    const paxLink = pax.get('linkpath');
    if (paxLink?.length) linkname = paxLink.toString('latin1');
    if (type === 'file' && [...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) {
      throw new TarFormatError(`${JSON.stringify(name)} is a GNU sparse file, which is not supported`);
    }
    const bodySize = paxNumber(pax, 'size') ?? headerSize;
    const entry: TarEntry = {
      name,
      type,
      mode: readNumber(block, 100, 8, 'mode') & 0o7777,
      uid: paxNumber(pax, 'uid') ?? readNumber(block, 108, 8, 'uid'),
      gid: paxNumber(pax, 'gid') ?? readNumber(block, 116, 8, 'gid'),
      // Only files carry content; other types' size fields are ignored, as Go's archive/tar does.
      size: type === 'file' ? bodySize : 0,
      mtime: paxTime(pax) ?? readNumber(block, 136, 12, 'mtime'),
      linkname,
      devmajor: type === 'char-device' || type === 'block-device' ? readNumber(block, 329, 8, 'devmajor') : 0,
      devminor: type === 'char-device' || type === 'block-device' ? readNumber(block, 337, 8, 'devminor') : 0,
      xattrs: paxXattrs(pax),
    };
    return { entry, bodySize };
  }

  private startBody(kind: BodyKind, size: number): void {
    this.bodyKind = kind;
    this.remaining = size;
    this.padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size === 0) this.finishBody();
    else this.state = 'body';
  }

  private onBody(slice: Buffer): void {
    if (this.bodyKind === 'entry') {
      this.handler.data(slice);
    } else if (this.bodyKind === 'meta') {
      this.metaChunks.push(Buffer.from(slice)); // copy: the caller may reuse its chunk
    }
  }

  private finishBody(): void {
    if (this.bodyKind === 'entry') this.handler.entryEnd();
    else if (this.bodyKind === 'meta') this.finishMeta(Buffer.concat(this.metaChunks));
    this.metaChunks = [];
    this.state = this.padding > 0 ? 'padding' : 'header';
  }

  private finishMeta(data: Buffer): void {
    switch (this.metaKind) {
      case 'pax':
        this.pax = new Map([...(this.pax ?? []), ...parsePax(data)]);
        break;
      case 'global-pax':
        for (const [k, v] of parsePax(data)) {
          if (v.length === 0) this.globalPax.delete(k);
          else this.globalPax.set(k, v);
        }
        break;
      case 'long-name':
        this.longName = cString(data);
        break;
      case 'long-link':
        this.longLink = cString(data);
        break;
    }
  }
}

function entryType(typeflag: string, name: string): TarEntryType {
  switch (typeflag) {
    case '\0':
      // Pre-POSIX archives mark directories with a trailing slash only.
      return name.endsWith('/') ? 'directory' : 'file';
    case '0':
    case '7':
      return 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '3':
      return 'char-device';
    case '4':
      return 'block-device';
    case '5':
    case 'D':
      return 'directory';
    case '6':
      return 'fifo';
    case 'S':
      throw new TarFormatError(`${JSON.stringify(name)} is a GNU sparse file, which is not supported`);
    default:
      throw new TarFormatError(`${JSON.stringify(name)} has unsupported tar entry type ${JSON.stringify(typeflag)}`);
  }
}

/** Parses pax records `<len> <key>=<value>\n`; values stay raw bytes. */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length && data[pos] !== 0) {
    const space = data.indexOf(0x20, pos);
    const length = space === -1 ? NaN : Number(data.toString('latin1', pos, space));
    if (!Number.isSafeInteger(length) || length <= space - pos + 1 || pos + length > data.length || data[pos + length - 1] !== 0x0a) {
      throw new TarFormatError(`malformed pax record at byte ${pos}`);
    }
    const record = data.subarray(space + 1, pos + length - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError(`malformed pax record at byte ${pos}: no key`);
    records.set(record.toString('utf8', 0, eq), record.subarray(eq + 1));
    pos += length;
  }
  return records;
}

/** Shared by every entry without xattrs: most entries have none, and a map each is garbage to collect. */
const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();

function paxXattrs(pax: Map<string, Buffer>): ReadonlyMap<string, Buffer> {
  if (pax.size === 0) return NO_XATTRS;
  const xattrs = new Map<string, Buffer>();
  for (const [key, value] of pax) {
    if (key.startsWith('SCHILY.xattr.')) {
      xattrs.set(key.slice('SCHILY.xattr.'.length), value);
    } else if (key.startsWith('LIBARCHIVE.xattr.')) {
      // libarchive URL-encodes the name and base64-encodes the value.
      xattrs.set(decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(value.toString('latin1'), 'base64'));
    }
  }
  return xattrs.size > 0 ? xattrs : NO_XATTRS;
}

function paxNumber(pax: Map<string, Buffer>, key: string): number | undefined {
  const raw = pax.get(key);
  if (!raw?.length) return undefined;
  const text = raw.toString('latin1');
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(value)) throw new TarFormatError(`pax ${key}=${JSON.stringify(text)} is not a valid number`);
  return value;
}

function paxTime(pax: Map<string, Buffer>): number | undefined {
  const raw = pax.get('mtime');
  if (!raw?.length) return undefined;
  const text = raw.toString('latin1');
  if (!/^-?[0-9]+(\.[0-9]*)?$/.test(text)) throw new TarFormatError(`pax mtime=${JSON.stringify(text)} is not a valid time`);
  return Number(text);
}

/** Reads an octal field, or a base-256 one (GNU extension, high bit set). */
function readNumber(block: Buffer, offset: number, length: number, field: string): number {
  const first = block[offset];
  if (first & 0x80) {
    if (first === 0xff) throw new TarFormatError(`negative ${field} in tar header`);
    let value = first & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + block[offset + i];
    if (!Number.isSafeInteger(value)) throw new TarFormatError(`${field} in tar header is too large`);
    return value;
  }
  let i = offset;
  const end = offset + length;
  while (i < end && (block[i] === 0x20 || block[i] === 0)) i++;
  let value = 0;
  for (; i < end; i++) {
    const c = block[i];
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`invalid ${field} field in tar header`);
    value = value * 8 + (c - 0x30);
  }
  return value;
}

function verifyChecksum(block: Buffer): void {
  const stored = readNumber(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new TarFormatError('invalid tar header checksum (is the layer corrupt or compressed differently than its media type says?)');
  }
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function readString(block: Buffer, offset: number, length: number): string {
  const nul = block.indexOf(0, offset);
  const end = nul === -1 || nul > offset + length ? offset + length : nul;
  return block.toString('latin1', offset, end);
}

function cString(data: Buffer): string {
  const nul = data.indexOf(0);
  return data.toString('latin1', 0, nul === -1 ? data.length : nul);
}
