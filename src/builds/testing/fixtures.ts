// Where the shared BuildKit fixtures are: `shared/` sits beside the repository
// (in a developer's tree and in CI's clone alike), so walk up until it shows.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURE_SET = path.join('shared', 'fixtures', 'buildkit-v0.20.2');

export function buildkitFixturesDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, FIXTURE_SET);
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`fixtures ${FIXTURE_SET} not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}
