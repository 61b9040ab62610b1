// Docker token scopes (distribution's auth/scope spec) and the `access` claim. Pure.
//
//   scope         := resourcescope [ ' ' resourcescope ]*
//   resourcescope := type ':' name ':' action [ ',' action ]*
//
// The name may itself contain ':' (a `host:port/` prefix), so the type ends at
// the first ':' and the actions start after the last one.

/** One entry of a token's `access` claim, in the Docker token format. */
export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

/** A resource scope as a client asks for it; same shape as an access entry. */
export type ResourceScope = AccessEntry;

export class ScopeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScopeError';
  }
}

const TYPE_RE = /^[a-z0-9]+(?:\([a-z0-9]+\))?$/;
const ACTION_RE = /^(?:[a-z]+|\*)$/;

export function parseScope(text: string): ResourceScope {
  const first = text.indexOf(':');
  const last = text.lastIndexOf(':');
  if (first <= 0 || last === first) {
    throw new ScopeError(`scope "${text}" is not of the form type:name:actions (e.g. repository:acme/app:pull,push)`);
  }
  const type = text.slice(0, first);
  const name = text.slice(first + 1, last);
  const actions = unique(text.slice(last + 1).split(',').filter((a) => a.length > 0));
  if (!TYPE_RE.test(type)) throw new ScopeError(`scope "${text}" has an invalid resource type "${type}"`);
  if (name.length === 0) throw new ScopeError(`scope "${text}" names no resource`);
  const badAction = actions.find((a) => !ACTION_RE.test(a));
  if (badAction !== undefined) throw new ScopeError(`scope "${text}" has an invalid action "${badAction}"`);
  return { type, name, actions };
}

/**
 * Parses the values of the `scope` parameter: it may repeat (Docker's GET form)
 * and each value may hold several space-separated scopes (the OAuth2 form).
 */
export function parseScopeParams(values: readonly string[]): ResourceScope[] {
  return values.flatMap((value) => value.split(' ').filter((s) => s.length > 0).map(parseScope));
}

export function formatScope(scope: ResourceScope): string {
  return `${scope.type}:${scope.name}:${scope.actions.join(',')}`;
}

/** Space-separated, as the OAuth2 `scope` answer field wants it. */
export function formatScopes(scopes: readonly ResourceScope[]): string {
  return scopes.map(formatScope).join(' ');
}

/** Folds entries naming the same resource into one, keeping first-seen order. */
export function mergeAccess(entries: readonly AccessEntry[]): AccessEntry[] {
  const merged = new Map<string, AccessEntry>();
  for (const entry of entries) {
    const key = `${entry.type}\u0000${entry.name}`;
    const seen = merged.get(key);
    if (seen) seen.actions = unique([...seen.actions, ...entry.actions]);
    else merged.set(key, { type: entry.type, name: entry.name, actions: unique(entry.actions) });
  }
  return [...merged.values()];
}

/**
 * What a token may carry: each requested scope cut down to what `allowed` says
 * the caller may do on that resource. Asking for `*` takes everything allowed.
 * Resources left with no action are dropped; repeats are merged.
 */
export function intersectScopes(
  requested: readonly ResourceScope[],
  allowed: (type: string, name: string) => readonly string[],
): AccessEntry[] {
  const granted: AccessEntry[] = [];
  for (const scope of requested) {
    const permitted = allowed(scope.type, scope.name);
    const actions = scope.actions.includes('*') ? [...permitted] : scope.actions.filter((a) => permitted.includes(a));
    if (actions.length > 0) granted.push({ type: scope.type, name: scope.name, actions });
  }
  return mergeAccess(granted);
}

/** Whether `access` grants `action` on the resource; a `*` action grants every action. */
export function accessAllows(access: readonly AccessEntry[], type: string, name: string, action: string): boolean {
  return access.some(
    (entry) => entry.type === type && entry.name === name && (entry.actions.includes(action) || entry.actions.includes('*')),
  );
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}
