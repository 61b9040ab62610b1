// Tenant names and the cache scope derived from them. Pure.
import { createHash } from 'node:crypto';

/** First path components the registry keeps for itself; a tenant by these names would own them. */
export const RESERVED_NAMESPACES: readonly string[] = ['cache', 'builds'];

export const MAX_TENANT_LENGTH = 64;

// One repository path component (OCI name grammar), so `<tenant>/app` is a valid repo name.
const TENANT_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;

/**
 * Why `name` cannot be a tenant, or null when it can. `publicNamespaces` are
 * the first components of KILN_PUBLIC_REPOS, reserved for the platform's images.
 */
export function tenantNameProblem(name: string, publicNamespaces: readonly string[] = []): string | null {
  if (name.length === 0) return 'tenant name is empty';
  if (name.length > MAX_TENANT_LENGTH) return `tenant name is longer than ${MAX_TENANT_LENGTH} characters`;
  if (!TENANT_RE.test(name)) {
    return `tenant name "${name}" must be lowercase letters and digits, joined by ".", "_", "__" or "-" (it becomes the first component of repository names)`;
  }
  if (RESERVED_NAMESPACES.includes(name)) return `tenant name "${name}" is reserved for the registry's own repositories`;
  if (publicNamespaces.includes(name)) return `tenant name "${name}" is reserved for the platform's public images (KILN_PUBLIC_REPOS)`;
  return null;
}

export function isValidTenantName(name: string): boolean {
  return tenantNameProblem(name) === null;
}

/**
 * The tenant's build cache scope, `cache/<scope>`. Derived, never chosen, so no
 * tenant can pick a scope that is another tenant's cache; one-way so the scope
 * does not reveal the tenant's name to whoever sees cache refs.
 */
export function tenantScope(tenant: string): string {
  return 'tenant-' + createHash('sha256').update(tenant, 'utf8').digest('hex').slice(0, 16);
}
