// Parsing of image references as the management API and CLI take them:
// `repo:tag`, `repo@digest`, `repo` (tag latest) or a bare digest.
import { parseDigest } from '../oci/digest.js';
import { explainInvalidName, isValidRepoName, isValidTag } from '../oci/names.js';

export type ImageRef = { kind: 'digest'; digest: string } | { kind: 'tag'; repo: string; tag: string } | { kind: 'repo-digest'; repo: string; digest: string };

export class RefError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefError';
  }
}

export function parseImageRef(text: string): ImageRef {
  const ref = text.trim();
  if (/^[a-z0-9]+:[a-f0-9]{64,128}$/.test(ref)) return { kind: 'digest', digest: parseDigest(ref).digest };
  const at = ref.indexOf('@');
  if (at !== -1) {
    const repo = ref.slice(0, at);
    checkRepo(repo);
    return { kind: 'repo-digest', repo, digest: parseDigest(ref.slice(at + 1)).digest };
  }
  // A colon after the last slash separates the tag (a host:port prefix has a slash after it).
  const colon = ref.lastIndexOf(':');
  const hasTag = colon > ref.lastIndexOf('/');
  const repo = hasTag ? ref.slice(0, colon) : ref;
  const tag = hasTag ? ref.slice(colon + 1) : 'latest';
  checkRepo(repo);
  if (!isValidTag(tag)) throw new RefError(`"${tag}" is not a valid tag`);
  return { kind: 'tag', repo, tag };
}

export function formatRef(repo: string, tag: string | null, digest: string): string {
  return tag ? `${repo}:${tag}` : `${repo}@${digest}`;
}

function checkRepo(repo: string): void {
  if (!isValidRepoName(repo)) throw new RefError(explainInvalidName(repo));
}
