// Repository name and tag grammar (OCI distribution-spec v1.1, "Pulling manifests").

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Longest repository name accepted, as most registries do (hostname + name fit in 255). */
export const MAX_NAME_LENGTH = 255;

export function isValidRepoName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

/** Explains why a name is invalid, in words a person can act on. */
export function explainInvalidName(name: string): string {
  if (name.length > MAX_NAME_LENGTH) return `repository name is longer than ${MAX_NAME_LENGTH} characters`;
  if (/[A-Z]/.test(name)) return `repository name "${name}" must be lowercase`;
  if (name.split('/').some((c) => c === '..' || c === '.')) return `repository name "${name}" must not contain "." or ".." components`;
  return `repository name "${name}" must be slash-separated components of lowercase letters and digits, joined by ".", "_", "__" or "-"`;
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}
