// The build cache plan (DESIGN.md "Build cache plan"): which registry refs a
// build imports its cache from, exports it to and pushes its image to, spelled
// exactly as buildctl takes them, and which repos its token must reach. Pure.
import { isValidRepoName } from '../oci/names.js';
import { invalidInput } from './errors.js';

export interface PlanInput {
  /** `host[:port]` where builders reach the registry (KILN_REGISTRY_HOST). */
  registry: string;
  /** The registry speaks plain HTTP (KILN_REGISTRY_INSECURE). */
  insecure: boolean;
  buildId: string;
  /** The caller's cache scope, from its token (never from the form); null only for admin callers without a tenant. */
  tenantScope: string | null;
  globalKey?: string | null;
  /** An admin build fills the global cache instead of a tenant's. */
  admin: boolean;
}

export type RepoAction = 'pull' | 'push';

export interface RepoGrant {
  /** Repository name without the registry host, as tokens scope it. */
  repo: string;
  actions: RepoAction[];
}

export interface BuildPlan {
  registry: string;
  insecure: boolean;
  buildId: string;
  /** `R/builds/<id>`: the image is pushed here (tag `latest`). */
  imageName: string;
  /** Value of buildctl `--output`. */
  output: string;
  /** Values of buildctl `--import-cache`, global first. */
  imports: string[];
  /** Value of buildctl `--export-cache`; null when the build exports no cache. */
  export: string | null;
  /** The bare refs (`R/cache/…`) behind `imports`, same order. */
  importRefs: string[];
  exportRef: string | null;
  /** What the build's token must be granted: nothing more. */
  grants: RepoGrant[];
}

const NAME_CHARS = /^[a-z0-9-]+$/;
const MIN_NAME = 3;
const MAX_NAME = 64;
// `cache/global/<key>` is the global tier; a tenant scope of that name would alias it.
const RESERVED_SCOPES = new Set(['global']);
const REGISTRY_HOST = /^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/;

const EXPORT_OPTIONS = 'mode=max,image-manifest=true,oci-mediatypes=true';
const INSECURE_OPTION = 'registry.insecure=true';

/**
 * Normalizes a global cache key or a cache scope: trimmed, lowercase, then
 * checked to be 3–64 of `[a-z0-9-]` (not starting or ending with "-", so it
 * stays a valid repository path component).
 */
export function normalizeCacheName(value: string, what: 'global cache key' | 'cache scope'): string {
  const name = value.trim().toLowerCase();
  if (name.length < MIN_NAME || name.length > MAX_NAME) {
    throw invalidInput(`${what} "${value}" must be ${MIN_NAME} to ${MAX_NAME} characters long`);
  }
  if (!NAME_CHARS.test(name)) {
    throw invalidInput(`${what} "${value}" may contain only letters, digits and "-" (for example node20)`);
  }
  if (name.startsWith('-') || name.endsWith('-')) {
    throw invalidInput(`${what} "${value}" must start and end with a letter or digit`);
  }
  return name;
}

export function normalizeRegistryHost(value: string): string {
  const host = value.trim().toLowerCase().replace(/\/+$/, '');
  if (/^[a-z]+:\/\//.test(host)) {
    throw invalidInput(`registry "${value}" must be host[:port] without a scheme; say plain HTTP with the insecure setting`);
  }
  if (!REGISTRY_HOST.test(host)) throw invalidInput(`registry "${value}" is not host[:port]`);
  return host;
}

function checkBuildId(id: string): string {
  if (id.includes('/') || !isValidRepoName(`builds/${id}`)) {
    throw invalidInput(`build id "${id}" must be one repository path component (lowercase letters, digits, "-", "_", ".")`);
  }
  return id;
}

function checkTenantScope(scope: string | null): string {
  if (scope === null) throw invalidInput('a tenant build needs the cache scope of the caller\'s tenant');
  const name = normalizeCacheName(scope, 'cache scope');
  if (RESERVED_SCOPES.has(name)) throw invalidInput(`cache scope "${scope}" is reserved for the global cache`);
  return name;
}

export function planBuild(input: PlanInput): BuildPlan {
  const registry = normalizeRegistryHost(input.registry);
  const buildId = checkBuildId(input.buildId);
  const hasKey = input.globalKey !== undefined && input.globalKey !== null && input.globalKey.trim() !== '';
  const globalRepo = hasKey ? `cache/global/${normalizeCacheName(input.globalKey as string, 'global cache key')}` : null;
  // Admin builds neither read nor write a tenant's cache, so they need no scope.
  const tenantRepo = input.admin ? null : `cache/${checkTenantScope(input.tenantScope)}`;

  const importRepos = [globalRepo, tenantRepo].filter((r): r is string => r !== null);
  const exportRepo = input.admin ? globalRepo : tenantRepo;
  const imageRepo = `builds/${buildId}`;
  const withInsecure = (option: string) => (input.insecure ? `${option},${INSECURE_OPTION}` : option);
  const ref = (repo: string) => `${registry}/${repo}`;

  return {
    registry,
    insecure: input.insecure,
    buildId,
    imageName: ref(imageRepo),
    output: withInsecure(`type=image,name=${ref(imageRepo)},push=true,oci-mediatypes=true`),
    imports: importRepos.map((repo) => withInsecure(`type=registry,ref=${ref(repo)}`)),
    export: exportRepo === null ? null : withInsecure(`type=registry,ref=${ref(exportRepo)},${EXPORT_OPTIONS}`),
    importRefs: importRepos.map(ref),
    exportRef: exportRepo === null ? null : ref(exportRepo),
    grants: grantsFor(imageRepo, exportRepo, importRepos),
  };
}

/** Push+pull where the build writes, pull where it only reads; one entry per repo. */
function grantsFor(imageRepo: string, exportRepo: string | null, importRepos: string[]): RepoGrant[] {
  const grants: RepoGrant[] = [{ repo: imageRepo, actions: ['pull', 'push'] }];
  if (exportRepo !== null) grants.push({ repo: exportRepo, actions: ['pull', 'push'] });
  for (const repo of importRepos) {
    if (!grants.some((g) => g.repo === repo)) grants.push({ repo, actions: ['pull'] });
  }
  return grants;
}

/**
 * Pull grants for the base images that live in this registry (FROM lines from
 * baseImagesOf()): the build token must read them too. Refs elsewhere need no
 * grant of ours. The caller still checks the tenant may pull each repo. Pure.
 */
export function baseImageGrants(registry: string, baseImageRefs: string[]): RepoGrant[] {
  const prefix = `${normalizeRegistryHost(registry)}/`;
  const repos = new Set<string>();
  for (const ref of baseImageRefs) {
    if (!ref.toLowerCase().startsWith(prefix)) continue;
    // Drop `@digest`, then a `:tag` after the last slash.
    const name = ref.slice(prefix.length).split('@')[0]!.replace(/:[^/]*$/, '');
    if (isValidRepoName(name)) repos.add(name);
  }
  return [...repos].map((repo) => ({ repo, actions: ['pull'] }));
}
