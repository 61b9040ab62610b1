// The contract between the HTTP layers (registry, management API) and auth.
// Handlers say what they need (a repo and actions); an Authorizer answers with
// the caller's principal or throws AuthError. With auth off every caller is an
// anonymous admin.
import type { IncomingHttpHeaders } from 'node:http';

export type Action = 'pull' | 'push' | 'delete';
export type Role = 'admin' | 'tenant' | 'build' | 'anonymous';

export interface Principal {
  subject: string;
  role: Role;
  /** Tenant the caller acts for; null for anonymous callers and for admins created without one. */
  tenant: string | null;
  /** For build tokens: the build they belong to. */
  buildId?: string;
  /** For build tokens: an admin build fills the global cache instead of its tenant's. */
  adminBuild?: boolean;
  /** For build tokens: the global cache key the build imports (and, for admin builds, exports). */
  globalCacheKey?: string | null;
  /**
   * For build tokens: repositories the build may pull besides its own and the
   * caches (its FROM images, which the submitter was allowed to pull). Pull
   * only; entries under `cache/` or `builds/` are ignored by the policy.
   */
  pullRepos?: readonly string[];
}

export interface AccessRequest {
  /** The repository, or null for requests about the registry as a whole (`/v2/`, `/v2/_catalog`). */
  repo: string | null;
  actions: Action[];
  /**
   * A listing of the registry's repositories (`/v2/_catalog`), which token
   * clients must ask for as `registry:catalog:*`.
   */
  catalog?: boolean;
}

/**
 * Where the repositories a caller may pull can be, as name ranges a database
 * pages through: everything, or some prefixes plus some exact names. A
 * superset of what `canPull` allows (it bounds the reading, `canPull` decides).
 */
export type RepoVisibility = { all: true } | { all: false; prefixes: string[]; names: string[] };

export const SEES_EVERYTHING: RepoVisibility = { all: true };

export interface AuthDecision {
  principal: Principal;
  /** Whether the caller may pull this repo: used to filter the catalog and listings. */
  canPull(repo: string): boolean;
  /** The name ranges `canPull` can allow, so listings read only those. */
  visible: RepoVisibility;
  /**
   * Loads what `canPull` needs to answer for these repos (owners of builds
   * kept in PostgreSQL); listings await it per batch. Absent: nothing to load.
   */
  preparePull?: (repos: readonly string[]) => Promise<void>;
}

/** An authentication or authorization failure; mapped to HTTP in one place per API. */
export class AuthError extends Error {
  constructor(
    readonly status: 401 | 403,
    readonly code: 'UNAUTHORIZED' | 'DENIED',
    message: string,
    /** Value of WWW-Authenticate for 401 answers. */
    readonly challenge?: string,
    /**
     * The challenge to answer with where the answer can have no body (HEAD),
     * so clients still show the reason: a 401 with `error="insufficient_scope"`
     * and `error_description`.
     */
    readonly bodilessChallenge?: string,
  ) {
    super(message);
    this.name = 'AuthError';
  }
}

export interface Authorizer {
  readonly enabled: boolean;
  /**
   * Checks that the request's credentials grant `access`. `baseUrl` is the
   * registry's external URL as the client reached it (for the token realm).
   */
  authorize(headers: IncomingHttpHeaders, access: AccessRequest, baseUrl: string): Promise<AuthDecision>;
}

const ANONYMOUS_ADMIN: Principal = { subject: 'anonymous', role: 'admin', tenant: null };

/** Auth off: everything is allowed. Only ever used on loopback or with --insecure-no-auth. */
export class OpenAuthorizer implements Authorizer {
  readonly enabled = false;
  async authorize(): Promise<AuthDecision> {
    return { principal: ANONYMOUS_ADMIN, canPull: () => true, visible: SEES_EVERYTHING };
  }
}
