// A build's log: lines appended to builds/<id>/build.log as they come (each
// write reaches the file before anyone hears of the line), and followers that
// get the file so far and then every new line until the build ends, none
// missed and none twice. The builder's output is capped (KILN_BUILD_LOG_MAX_BYTES):
// past the cap one line says the log was cut and the builder's further lines
// are dropped; Kiln's own lines (`note`) still go in, so the log always ends
// saying how the build ended.
//
// A build another process runs (several servers on one database and one data
// directory or bucket) is followed from the stored log alone
// (`followStoredLog`): read from the byte where the last read stopped (a
// ranged read of the FileStore), on a timer, until its status says it ended
// and the log's last line says so too.
import { appendFileSync, createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** Where a log is replayed from: a local file, or a function opening the stored log (null when there is none). */
export type LogSource = string | (() => Promise<Readable | null>);

/**
 * Reads a stored log from byte `start`, at most `maxBytes`: the bytes (empty
 * when there are none past `start`), or null when there is no log yet.
 */
export type LogReader = (start: number, maxBytes: number) => Promise<Buffer | null>;

export interface LogFollower {
  line(text: string, index: number): void;
  /** The build ended (or the log was closed); no more lines come. */
  end(): void;
}

export const DEFAULT_LOG_MAX_BYTES = 16 * 1024 * 1024;

export class BuildLog {
  private lines: number;
  private bytes: number;
  private cut = false;
  private ended = false;
  private readonly followers = new Set<LogFollower>();

  private constructor(
    readonly file: string,
    existing: string,
    private readonly maxBytes: number,
  ) {
    this.lines = countLines(existing);
    this.bytes = Buffer.byteLength(existing);
    this.cut = existing.includes(CUT_MARK);
  }

  /** Opens the log of a build that has not ended; lines already in the file are kept. */
  static async open(file: string, options: { maxBytes?: number } = {}): Promise<BuildLog> {
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    return new BuildLog(file, text, options.maxBytes ?? DEFAULT_LOG_MAX_BYTES);
  }

  get count(): number {
    return this.lines;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** A line of the builder's output: dropped once the log has reached its cap. */
  write(text: string): void {
    if (this.ended || this.cut) return;
    const line = oneLine(text);
    if (this.bytes + Buffer.byteLength(line) + 1 > this.maxBytes) {
      this.cut = true;
      this.append(`==> ${CUT_MARK} at ${this.bytes} bytes (KILN_BUILD_LOG_MAX_BYTES=${this.maxBytes}); the build goes on, its further output is not kept`);
      return;
    }
    this.append(line);
  }

  /** One of Kiln's own lines (`==> …`): always kept. */
  note(text: string): void {
    if (this.ended) return;
    this.append(oneLine(text));
  }

  private append(line: string): void {
    appendFileSync(this.file, `${line}\n`);
    this.bytes += Buffer.byteLength(line) + 1;
    const index = this.lines++;
    for (const follower of this.followers) follower.line(line, index);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const follower of this.followers) follower.end();
    this.followers.clear();
  }

  subscribe(follower: LogFollower): () => void {
    if (this.ended) {
      follower.end();
      return () => undefined;
    }
    this.followers.add(follower);
    return () => this.followers.delete(follower);
  }
}

/**
 * Gives `follower` the lines of the log (`stored` when the build is not
 * running here, else the live log's own file), then, when `live` is the log
 * of a running build, its new lines until it ends; then `end()`. With `after`, the
 * lines up to that index are skipped (a client resuming with Last-Event-ID).
 * Returns a function that stops following.
 */
export async function followLog(stored: LogSource, live: BuildLog | null, target: LogFollower, options: { after?: number } = {}): Promise<() => void> {
  const after = options.after ?? -1;
  const follower: LogFollower = {
    line: (text, index) => {
      if (index > after) target.line(text, index);
    },
    end: () => target.end(),
  };
  if (live === null || live.isEnded) {
    await replay(stored, Infinity, follower);
    follower.end();
    return () => undefined;
  }
  // Lines written from now on are held back until the file up to here has been sent.
  const upTo = live.count;
  const held: Array<[string, number]> = [];
  let replaying = true;
  let endedMeanwhile = false;
  let stopped = false;
  const unsubscribe = live.subscribe({
    line(text, index) {
      if (stopped) return;
      if (replaying) held.push([text, index]);
      else follower.line(text, index);
    },
    end() {
      if (stopped) return;
      if (replaying) endedMeanwhile = true;
      else follower.end();
    },
  });
  const stop = () => {
    stopped = true;
    unsubscribe();
  };
  try {
    await replay(live.file, upTo, follower, () => stopped);
  } catch (err) {
    stop();
    throw err;
  }
  replaying = false;
  if (stopped) return stop;
  for (const [text, index] of held) follower.line(text, index);
  if (endedMeanwhile) follower.end();
  return stop;
}

async function replay(source: LogSource, limit: number, follower: LogFollower, stopped: () => boolean = () => false): Promise<void> {
  if (limit <= 0) return;
  const stream = typeof source === 'string' ? await openLocal(source) : await source();
  if (stream === null) return;
  stream.setEncoding('utf8');
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let index = 0;
  try {
    for await (const line of lines) {
      if (index >= limit || stopped()) break;
      follower.line(line, index++);
    }
  } finally {
    lines.close();
    stream.destroy();
  }
}

/** A local file as a stream; null when it does not exist. */
async function openLocal(file: string): Promise<Readable | null> {
  const stream = createReadStream(file);
  const missing = await new Promise<boolean>((resolve, reject) => {
    stream.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? resolve(true) : reject(err)));
    stream.once('open', () => resolve(false));
  });
  return missing ? null : stream;
}

/** A LogReader of a local file. */
function fileReader(file: string): LogReader {
  return async (start, maxBytes) => {
    const handle = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (handle === null) return null;
    try {
      const chunk = Buffer.alloc(maxBytes);
      const { bytesRead } = await handle.read(chunk, 0, maxBytes, start);
      return chunk.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  };
}

export interface StoredLogOptions {
  /** Lines up to this index are skipped (a client resuming with Last-Event-ID). */
  after?: number;
  /** How often the file and the status are read (KILN_BUILD_LOG_POLL_SECONDS). */
  pollMs: number;
  /** Whether the build has ended (its status in the database). */
  ended(): Promise<boolean>;
  /**
   * How long after the status said ended the stream waits for the log's end
   * line (the status is stored first, the line written next) before it ends
   * without it, as for a process that died between the two. Default 5 s.
   */
  settleMs?: number;
  /** Errors of a read on the timer; following stops with `end()`. */
  onError?(err: unknown): void;
}

/** The line `finish` writes last: `==> build ready`, `==> build failed: …`. */
const END_LINE = /^==> build (?:ready|failed|cancelled)(?::|$)/;
const END_SETTLE_MS = 5000;
const READ_CHUNK = 256 * 1024;

/**
 * Gives `follower` the lines of the stored log of a build this process does not
 * run: what is there, then what is appended, read every `pollMs` from where
 * the last read stopped (never holding the event loop, never reading a byte
 * twice), until the build has ended (asked of `ended()` when a read found
 * nothing new) and its end line has been read; then
 * `end()`. A partly written last line waits for its newline. Returns a
 * function that stops following.
 */
export async function followStoredLog(source: string | LogReader, follower: LogFollower, options: StoredLogOptions): Promise<() => void> {
  const read = typeof source === 'string' ? fileReader(source) : source;
  const after = options.after ?? -1;
  let offset = 0;
  let index = 0;
  let pending = Buffer.alloc(0);
  let lastLine = '';
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let endedAt: number | null = null;
  let grew = false;
  const settleMs = options.settleMs ?? END_SETTLE_MS;

  /** Reads what was appended since the last read; whether anything was. */
  const readNew = async (): Promise<boolean> => {
    let grew = false;
    for (;;) {
      const chunk = await read(offset, READ_CHUNK);
      if (chunk === null || chunk.length === 0 || stopped) break;
      grew = true;
      offset += chunk.length;
      // Lines split at the newline byte, which no multi-byte UTF-8 sequence contains.
      let data = Buffer.concat([pending, chunk]);
      for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a)) {
        const line = data.subarray(0, nl).toString('utf8');
        data = data.subarray(nl + 1);
        lastLine = line;
        const at = index++;
        if (at > after) follower.line(line, at);
      }
      pending = Buffer.from(data);
    }
    return grew;
  };

  const finish = () => {
    if (stopped) return;
    stopped = true;
    follower.end();
  };

  const tick = async (): Promise<void> => {
    timer = null;
    if (stopped) return;
    try {
      // While the log grows the build is running: the status is asked only when a read found nothing new.
      if (endedAt === null && !grew && (await options.ended())) endedAt = Date.now();
      if (stopped) return;
      grew = await readNew();
      if (endedAt !== null && (END_LINE.test(lastLine) || Date.now() - endedAt >= settleMs)) return finish();
    } catch (err) {
      options.onError?.(err);
      return finish();
    }
    if (!stopped) timer = setTimeout(() => void tick(), options.pollMs);
  };

  await readNew();
  if (!stopped) await tick();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
  };
}

const CUT_MARK = 'the log is cut here';

/** One line stays one line in the file and in the event stream. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
