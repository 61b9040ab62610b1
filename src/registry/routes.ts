// Parses /v2 request paths. Repository names contain slashes and may even
// contain "blobs" or "manifests" as components, so each pattern is anchored at
// the end and the name is whatever precedes the final keyword.
import type { Action } from '../auth/authorizer.js';

export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'tags'; name: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'uploads'; name: string }
  | { kind: 'upload'; name: string; id: string }
  | { kind: 'referrers'; name: string; digest: string };

const PATTERNS: [RegExp, (m: RegExpExecArray) => V2Route][] = [
  [/^\/v2\/?$/, () => ({ kind: 'base' })],
  [/^\/v2\/_catalog$/, () => ({ kind: 'catalog' })],
  [/^\/v2\/(.+)\/tags\/list$/, (m) => ({ kind: 'tags', name: m[1]! })],
  [/^\/v2\/(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1]!, reference: m[2]! })],
  [/^\/v2\/(.+)\/blobs\/uploads\/?$/, (m) => ({ kind: 'uploads', name: m[1]! })],
  [/^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, (m) => ({ kind: 'upload', name: m[1]!, id: m[2]! })],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1]!, digest: m[2]! })],
  [/^\/v2\/(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1]!, digest: m[2]! })],
];

/** Matches a decoded path (no query string); null when it is no /v2 route. */
export function matchV2Route(pathname: string): V2Route | null {
  for (const [re, build] of PATTERNS) {
    const m = re.exec(pathname);
    if (m) return build(m);
  }
  return null;
}

/** The access a request needs, for the authorizer. */
export function requiredAction(route: V2Route, method: string): Action {
  // Cancelling one's own upload is part of pushing, not a deletion of content.
  if (method === 'DELETE') return route.kind === 'upload' ? 'push' : 'delete';
  if (method === 'GET' || method === 'HEAD') return 'pull';
  return 'push';
}

/**
 * Whether a request moves blob bytes (a download, an upload's body): the
 * requests bakes on this host give way to (transfer-activity.ts). HEAD and
 * manifests are small and do not count.
 */
export function movesBlobData(route: V2Route, method: string): boolean {
  if (route.kind === 'blob') return method === 'GET';
  if (route.kind === 'upload') return method === 'PATCH' || method === 'PUT';
  // A monolithic upload: POST with the blob as its body.
  return route.kind === 'uploads' && method === 'POST';
}

/** Which methods each route answers; anything else is 405. */
export const ROUTE_METHODS: Record<V2Route['kind'], readonly string[]> = {
  base: ['GET', 'HEAD'],
  catalog: ['GET'],
  tags: ['GET'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  blob: ['GET', 'HEAD', 'DELETE'],
  uploads: ['POST'],
  upload: ['GET', 'PATCH', 'PUT', 'DELETE'],
  referrers: ['GET'],
};
