// Platform base images (KILN_PUBLIC_REPOS): repository patterns every
// authenticated tenant may pull and only admins may push. A pattern is
// slash-separated components; `*` stands for one component, a trailing `**`
// for one or more. Its first component must be a plain name, which no tenant
// may then be called (a tenant `library` would otherwise own `library/**`). Pure.
import { isValidRepoName } from '../oci/names.js';

export const DEFAULT_PUBLIC_REPOS_SETTING = 'library/**';

// The registry's own namespaces follow their own rules in the policy.
const OWN_NAMESPACES = new Set(['cache', 'builds']);

export interface PublicRepos {
  /** The patterns as configured, in order. */
  readonly patterns: readonly string[];
  /** First components of the patterns: names no tenant may take. */
  readonly reservedNamespaces: readonly string[];
  /** Name prefixes that hold every match (each pattern's components before its first wildcard), for listings. */
  readonly listingPrefixes: readonly string[];
  matches(repo: string): boolean;
}

/** Parses a comma-separated list of patterns; throws with a message naming KILN_PUBLIC_REPOS. */
export function parsePublicRepos(setting: string): PublicRepos {
  const patterns = setting
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  const compiled = patterns.map((pattern) => ({ pattern, parts: checkPattern(pattern) }));
  return {
    patterns,
    reservedNamespaces: [...new Set(compiled.map((c) => c.parts[0]!))],
    listingPrefixes: [...new Set(compiled.map((c) => listingPrefix(c.parts)))],
    matches: (repo) => {
      const parts = repo.split('/');
      return compiled.some((c) => matchParts(c.parts, parts));
    },
  };
}

export const DEFAULT_PUBLIC_REPOS: PublicRepos = parsePublicRepos(DEFAULT_PUBLIC_REPOS_SETTING);

export const NO_PUBLIC_REPOS: PublicRepos = parsePublicRepos('');

function listingPrefix(parts: readonly string[]): string {
  const wild = parts.findIndex((p) => p === '*' || p === '**');
  // A pattern without wildcards names one repository; its name is its own prefix.
  return wild === -1 ? parts.join('/') : `${parts.slice(0, wild).join('/')}/`;
}

function checkPattern(pattern: string): string[] {
  const parts = pattern.split('/');
  const problem = (why: string) => new Error(`KILN_PUBLIC_REPOS: pattern "${pattern}" ${why}`);
  const first = parts[0]!;
  if (first === '*' || first === '**' || !isValidRepoName(first)) throw problem('must start with a plain repository name component, e.g. library/**');
  if (OWN_NAMESPACES.has(first)) throw problem(`may not cover ${first}/, which the registry keeps for itself`);
  parts.forEach((part, i) => {
    if (part === '**') {
      if (i !== parts.length - 1) throw problem('may use ** only as its last component');
    } else if (part !== '*' && !isValidRepoName(part)) {
      throw problem(`has a component "${part}" that is neither a repository name component nor * or **`);
    }
  });
  return parts;
}

function matchParts(pattern: readonly string[], repo: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const part = pattern[i]!;
    if (part === '**') return repo.length > i;
    if (i >= repo.length) return false;
    if (part !== '*' && part !== repo[i]) return false;
  }
  return repo.length === pattern.length;
}
