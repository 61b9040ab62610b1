// What Kiln knows about each image it bakes: the names that point at it and
// the disk's size. The bake's state lives in its job; this is the catalogue.
//
// The disk is shared per digest (one bake however many tenants push it); all
// that a tenant sees of an image beyond the disk itself (where it came from,
// its index and platform, when it was named) lives on its own names.

import type { RepoScope } from './types.js';

/**
 * A repo:tag (or, for a bake asked by digest or an index pushed by digest,
 * a repo@digest) that names a baked image.
 */
export interface ImageName {
  repo: string;
  /** null: named by digest (the manifest `target` in `repo`). */
  tag: string | null;
  /** The single-platform image manifest that is baked. */
  digest: string;
  /** The index this name picked the image from (multi-platform pushes), or null. */
  indexDigest: string | null;
  platform: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface ImageRecord {
  /** Digest of the single-platform image manifest that is baked. */
  digest: string;
  diskSize: number | null;
  createdAt: number;
  updatedAt: number;
  /** Every name of the image, most recently named first. One image may belong to several tenants. */
  names: ImageName[];
}

export interface ImageSource {
  digest: string;
  repo: string;
  tag: string | null;
  indexDigest: string | null;
  platform: string | null;
}

/** Where a page of names ends: the last name's sort key (repo, tag, digest, index). */
export interface ImageNameCursor {
  repo: string;
  tag: string | null;
  digest: string;
  indexDigest: string | null;
}

/** A name as listed, with the size of its image's disk. */
export interface ListedImageName extends ImageName {
  diskSize: number | null;
}

export interface ImageNamePage {
  /** Names after this one, in (repo, tag, digest, index) order. */
  after?: ImageNameCursor;
  limit: number;
}

export interface ImageStore {
  /**
   * Records an image to bake and the name it was given. A tag name replaces a
   * digest name of the same image in the same repo (listed once); a digest
   * name is not added beside a tag name.
   */
  upsert(source: ImageSource): Promise<ImageRecord>;
  get(digest: string): Promise<ImageRecord | null>;
  /** The names of `repo:tag`. */
  namesOfTag(repo: string, tag: string): Promise<ImageName[]>;
  /** The names in `repo` of the image or index `digest`. */
  namesOfDigest(repo: string, digest: string): Promise<ImageName[]>;
  /** Every name, in any repo, of the image or index `digest`. */
  namesAnywhere(digest: string): Promise<ImageName[]>;
  /** A page of names within `scope` (the database reads only there), in (repo, tag, digest, index) order. */
  listNames(page: ImageNamePage, scope: RepoScope): Promise<ListedImageName[]>;
  setDiskSize(digest: string, size: number | null): Promise<void>;
  /** Forgets one name of an image, keeping the image. */
  deleteName(digest: string, repo: string, tag: string | null): Promise<boolean>;
  /**
   * The tag was deleted, or now names `except` (the manifest it was moved
   * to): its names that came from another manifest go. Returns the image
   * digests that lost a name.
   */
  dropTag(repo: string, tag: string, except?: string): Promise<string[]>;
  /** The manifest left `repo`: names of it as image or index go (tags of it included). Returns the image digests that lost a name. */
  dropManifest(repo: string, digest: string): Promise<string[]>;
  delete(digest: string): Promise<boolean>;
}
