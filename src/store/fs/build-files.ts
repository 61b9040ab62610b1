// Where a build's files live in the data directory.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { DataDir } from '../data-dir.js';

/** Where a build's files live: `builds/<id>/{source.tar.gz, build.log, result.json}`. */
export class BuildFiles {
  constructor(private readonly dirs: DataDir) {}

  dir(id: string): string {
    return this.dirs.buildDir(id);
  }
  /** The ids that have a directory. */
  async ids(): Promise<string[]> {
    const entries = await readdir(this.dirs.buildsRoot, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }
  /** The uploaded source, gzip-compressed. */
  source(id: string): string {
    return path.join(this.dir(id), 'source.tar.gz');
  }
  /** The source while it is being received. */
  partialSource(id: string): string {
    return path.join(this.dir(id), 'source.upload');
  }
  log(id: string): string {
    return path.join(this.dir(id), 'build.log');
  }
  /** The build's final record, written when it ends. */
  result(id: string): string {
    return path.join(this.dir(id), 'result.json');
  }
  /** The FROM repos the submitter was checked to be allowed to pull. */
  pullRepos(id: string): string {
    return path.join(this.dir(id), 'pull-repos.json');
  }
}
