// Who may do what to which repository (issue 4, "Repository policy"; issue 11, public repos). Pure.
//
// | repo                         | tenant T          | admin | build token of tenant T, build B        |
// | T/**                         | pull, push, delete| all   | pull on its FROM images only             |
// | public (KILN_PUBLIC_REPOS)   | pull              | all   | pull on its FROM images only             |
// | cache/<scope(T)>             | pull, push        | all   | pull, push (tenant builds)               |
// | cache/global/**              | pull              | all   | pull; push only for admin builds, on its key |
// | builds/<B> (owned by T)      | pull, delete      | all   | pull, push                               |
// | anything else                | —                 | all   | —                                        |
//
// A build token may also carry `pullRepos`: the repositories of its FROM images
// that the submitter was allowed to pull. They give `pull` and nothing more, on
// exactly those repositories, and never on anything under `cache/` or `builds/`
// (those follow the table whatever the list says). Public repos (by default
// `library/**`) are the platform's base images: no tenant owns them (their
// first component is reserved as a tenant name) and only admins write them.
import { isValidRepoName } from '../oci/names.js';
import type { Action, Principal, RepoVisibility } from './authorizer.js';
import { DEFAULT_PUBLIC_REPOS, type PublicRepos } from './public-repos.js';
import { intersectScopes, type AccessEntry, type ResourceScope } from './scope.js';
import { isValidTenantName, tenantScope } from './tenant.js';

/** Which tenant owns a build, or null when the build is unknown. Provided by the builds module. */
export type OwnerOfBuild = (buildId: string) => string | null;

export const noBuildsKnown: OwnerOfBuild = () => null;

/**
 * Makes the owners of these builds answerable by the `OwnerOfBuild` at once,
 * where they live in another process's reach (PostgreSQL). Owners never change
 * after creation, so a loaded answer stays true; a build not loaded answers
 * null, which refuses. The authorizer awaits it before the policy is asked.
 */
export type LoadBuildOwners = (buildIds: readonly string[]) => Promise<void>;

/** The build ids behind `builds/<id>` among `repos`: what the policy may ask the owner of. */
export function buildIdsIn(repos: readonly string[]): string[] {
  const ids: string[] = [];
  for (const repo of repos) {
    const kind = classifyRepo(repo);
    if (kind.kind === 'build') ids.push(kind.buildId);
  }
  return ids;
}

/** What the policy needs to know besides the caller and the repo. */
export interface PolicyContext {
  /** Which tenant owns a build; by default no build is known. */
  ownerOfBuild?: OwnerOfBuild;
  /** KILN_PUBLIC_REPOS; by default `library/**`. */
  publicRepos?: PublicRepos;
}

export const ALL_ACTIONS: readonly Action[] = ['pull', 'push', 'delete'];

/** The kinds of repository the policy tells apart. */
export type RepoKind =
  | { kind: 'tenant'; tenant: string }
  | { kind: 'tenant-cache'; scope: string }
  | { kind: 'global-cache'; key: string }
  | { kind: 'build'; buildId: string }
  | { kind: 'public' }
  | { kind: 'other' };

export function classifyRepo(repo: string, publicRepos: PublicRepos = DEFAULT_PUBLIC_REPOS): RepoKind {
  const parts = repo.split('/');
  const [first, second] = parts;
  if (first === 'cache') {
    if (second === 'global' && parts.length > 2) return { kind: 'global-cache', key: parts.slice(2).join('/') };
    if (second !== undefined && second !== 'global' && parts.length === 2) return { kind: 'tenant-cache', scope: second };
    return { kind: 'other' };
  }
  if (first === 'builds') return parts.length === 2 ? { kind: 'build', buildId: second } : { kind: 'other' };
  if (publicRepos.matches(repo)) return { kind: 'public' };
  if (publicRepos.reservedNamespaces.includes(first)) return { kind: 'other' };
  if (parts.length >= 2 && isValidTenantName(first)) return { kind: 'tenant', tenant: first };
  return { kind: 'other' };
}

/** The actions `principal` may take on `repo`, in the order pull, push, delete. */
export function allowedActions(principal: Principal, repo: string, context: PolicyContext = {}): Action[] {
  const kind = () => classifyRepo(repo, context.publicRepos);
  switch (principal.role) {
    case 'admin':
      return [...ALL_ACTIONS];
    case 'tenant':
      return principal.tenant === null ? [] : tenantActions(principal.tenant, kind(), context.ownerOfBuild ?? noBuildsKnown);
    case 'build':
      return buildActions(principal, repo, kind());
    case 'anonymous':
      return [];
  }
}

function tenantActions(tenant: string, repo: RepoKind, ownerOfBuild: OwnerOfBuild): Action[] {
  switch (repo.kind) {
    case 'tenant':
      return repo.tenant === tenant ? ['pull', 'push', 'delete'] : [];
    case 'tenant-cache':
      return repo.scope === tenantScope(tenant) ? ['pull', 'push'] : [];
    case 'global-cache':
      return ['pull'];
    case 'build':
      return ownerOfBuild(repo.buildId) === tenant ? ['pull', 'delete'] : [];
    case 'public':
      return ['pull'];
    case 'other':
      return [];
  }
}

function buildActions(build: Principal, name: string, repo: RepoKind): Action[] {
  switch (repo.kind) {
    case 'build':
      return build.buildId !== undefined && repo.buildId === build.buildId ? ['pull', 'push'] : [];
    case 'tenant-cache':
      // Admin builds export to the global cache only, so they get no tenant cache.
      return build.adminBuild !== true && build.tenant !== null && repo.scope === tenantScope(build.tenant) ? ['pull', 'push'] : [];
    case 'global-cache': {
      const ownKey = build.adminBuild === true && !!build.globalCacheKey && repo.key === build.globalCacheKey;
      return ownKey ? ['pull', 'push'] : ['pull'];
    }
    case 'tenant':
    case 'public':
    case 'other':
      return isBaseImageRepo(name) && (build.pullRepos ?? []).includes(name) ? ['pull'] : [];
  }
}

/**
 * Whether a build token's `pullRepos` may name `repo`: a valid repository
 * outside `cache/` and `builds/`, whose rights for builds come from the table alone.
 */
export function isBaseImageRepo(repo: string): boolean {
  if (!isValidRepoName(repo)) return false;
  const first = repo.split('/')[0];
  return first !== 'cache' && first !== 'builds';
}

/**
 * What a token for `principal` may carry when it asks for `requested`: each
 * repository scope cut down to the policy, and the catalog (`registry:catalog:*`)
 * for any identified caller, since the catalog lists only what the caller may pull.
 */
export function grantAccess(principal: Principal, requested: readonly ResourceScope[], context: PolicyContext = {}): AccessEntry[] {
  return intersectScopes(requested, (type, name) => {
    if (type === 'repository') return isValidRepoName(name) ? allowedActions(principal, name, context) : [];
    if (type === 'registry' && name === 'catalog') return principal.role === 'anonymous' ? [] : ['*'];
    return [];
  });
}

/**
 * The exact repositories a build touches, for the build token's `access`
 * claim: its plan's, plus pull on the FROM images in `pullRepos` (entries
 * under `cache/` or `builds/`, invalid names and repeats are left out).
 */
export function buildTokenAccess(build: {
  buildId: string;
  tenant: string | null;
  admin: boolean;
  globalKey: string | null;
  pullRepos?: readonly string[];
}): AccessEntry[] {
  const access: AccessEntry[] = [{ type: 'repository', name: `builds/${build.buildId}`, actions: ['pull', 'push'] }];
  if (!build.admin && build.tenant !== null) {
    access.push({ type: 'repository', name: `cache/${tenantScope(build.tenant)}`, actions: ['pull', 'push'] });
  }
  if (build.globalKey) {
    access.push({ type: 'repository', name: `cache/global/${build.globalKey}`, actions: build.admin ? ['pull', 'push'] : ['pull'] });
  }
  for (const repo of baseImagePullRepos(build.pullRepos ?? [])) access.push({ type: 'repository', name: repo, actions: ['pull'] });
  return access;
}

/** The entries of a build's `pullRepos` the policy honours, once each, in order. */
export function baseImagePullRepos(repos: readonly string[]): string[] {
  return [...new Set(repos.filter(isBaseImageRepo))];
}

/**
 * Name ranges holding every repository `principal` may pull under the table
 * above, for listings that page in the database. `builds/` is a prefix for
 * tenants: which builds a tenant owns is the builds module's to say, so their
 * repositories are filtered after reading; so are public repos, whose patterns
 * are read from their literal leading components.
 */
export function visibleRepos(principal: Principal, publicRepos: PublicRepos = DEFAULT_PUBLIC_REPOS): RepoVisibility {
  switch (principal.role) {
    case 'admin':
      return { all: true };
    case 'anonymous':
      return { all: false, prefixes: [], names: [] };
    case 'tenant':
      if (principal.tenant === null) return { all: false, prefixes: [], names: [] };
      return {
        all: false,
        prefixes: [`${principal.tenant}/`, 'cache/global/', 'builds/', ...publicRepos.listingPrefixes],
        names: [`cache/${tenantScope(principal.tenant)}`],
      };
    case 'build': {
      const names = principal.buildId === undefined ? [] : [`builds/${principal.buildId}`];
      if (principal.adminBuild !== true && principal.tenant !== null) names.push(`cache/${tenantScope(principal.tenant)}`);
      names.push(...baseImagePullRepos(principal.pullRepos ?? []));
      return { all: false, prefixes: ['cache/global/'], names };
    }
  }
}
