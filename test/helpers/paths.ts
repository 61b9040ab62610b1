// Where the tests find things, from source (tsx) or compiled (dist/). Free of
// server imports so unit tests of pure code can use it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (the folder holding package.json), from source or from dist/. */
export const repoRoot = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));
/** `../shared` beside the checkout: design, fixtures and bench tools. */
export const sharedDir = process.env.KILN_SHARED_DIR ?? path.resolve(repoRoot, '..', 'shared');
export const buildkitFixtures = path.join(sharedDir, 'fixtures', 'buildkit-v0.20.2');

function findRepoRoot(start: string): string {
  let dir = start;
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${start}`);
    dir = parent;
  }
  return dir;
}
