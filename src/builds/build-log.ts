// A build's log: lines appended to builds/<id>/build.log as they come (each
// write reaches the file before anyone hears of the line), and followers that
// get the file so far and then every new line until the build ends, none
// missed and none twice.
import { appendFileSync, createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

export interface LogFollower {
  line(text: string, index: number): void;
  /** The build ended (or the log was closed); no more lines come. */
  end(): void;
}

export class BuildLog {
  private lines: number;
  private ended = false;
  private readonly followers = new Set<LogFollower>();

  private constructor(
    readonly file: string,
    existingLines: number,
  ) {
    this.lines = existingLines;
  }

  /** Opens the log of a build that has not ended; lines already in the file are kept. */
  static async open(file: string): Promise<BuildLog> {
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    return new BuildLog(file, countLines(text));
  }

  get count(): number {
    return this.lines;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  write(text: string): void {
    if (this.ended) return;
    // One line stays one line in the file and in the event stream.
    const line = text.replace(/[\r\n]+/g, ' ');
    appendFileSync(this.file, `${line}\n`);
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
 * Gives `follower` the lines of `file`, then, when `live` is the log of a
 * running build, its new lines until it ends; then `end()`. Returns a
 * function that stops following.
 */
export async function followLog(file: string, live: BuildLog | null, follower: LogFollower): Promise<() => void> {
  if (live === null || live.isEnded) {
    await replay(file, Infinity, follower);
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
    await replay(file, upTo, follower, () => stopped);
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

async function replay(file: string, limit: number, follower: LogFollower, stopped: () => boolean = () => false): Promise<void> {
  if (limit <= 0) return;
  const stream = createReadStream(file, { encoding: 'utf8' });
  const missing = new Promise<boolean>((resolve) => {
    stream.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ENOENT'));
    stream.once('open', () => resolve(false));
  });
  if (await missing) return;
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

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
