// What Kiln knows about each image it bakes: the repos and tags that name it
// and the disk's size. The bake's state lives in its job; this is the catalogue.

/** A repo (and tag, when pushed by tag) that names a baked image. */
export interface ImageName {
  repo: string;
  tag: string | null;
  updatedAt: number;
}

export interface ImageRecord {
  /** Digest of the single-platform image manifest that is baked. */
  digest: string;
  /** The index this image was picked from, for multi-platform pushes. */
  indexDigest: string | null;
  platform: string | null;
  diskSize: number | null;
  createdAt: number;
  updatedAt: number;
  /** Every repo:tag that named the image, most recently pushed first. One image may belong to several tenants. */
  names: ImageName[];
}

export interface ImageSource {
  digest: string;
  repo: string;
  tag: string | null;
  indexDigest: string | null;
  platform: string | null;
}

export interface ImageStore {
  /** Records an image to bake and the name it was pushed under. */
  upsert(source: ImageSource): ImageRecord;
  get(digest: string): ImageRecord | null;
  /** Images picked from an index. */
  byIndex(indexDigest: string): ImageRecord[];
  list(): ImageRecord[];
  setDiskSize(digest: string, size: number | null): void;
  /** Forgets one name of an image, keeping the image. */
  deleteName(digest: string, repo: string, tag: string | null): boolean;
  delete(digest: string): boolean;
}
