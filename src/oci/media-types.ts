// Media types Kiln understands. Values come from the OCI image-spec v1.1 and the
// Docker Image Manifest V2 Schema 2 specification.

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const OCI_LAYER_ND = 'application/vnd.oci.image.layer.nondistributable.v1.tar';
export const OCI_LAYER_ND_GZIP = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
export const OCI_LAYER_ND_ZSTD = 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd';

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const DOCKER_LAYER_ZSTD = 'application/vnd.docker.image.rootfs.diff.tar.zstd';
export const DOCKER_FOREIGN_LAYER = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
export const DOCKER_SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+json';
export const DOCKER_SCHEMA1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

export const BUILDKIT_CACHE_CONFIG = 'application/vnd.buildkit.cacheconfig.v0';

/** Manifest media types that describe a single image (config + layers). */
export const IMAGE_MANIFEST_TYPES: ReadonlySet<string> = new Set([OCI_MANIFEST, DOCKER_MANIFEST]);
/** Manifest media types that list other manifests. */
export const INDEX_TYPES: ReadonlySet<string> = new Set([OCI_INDEX, DOCKER_LIST]);
/** Config media types of a runnable container image. */
export const RUNNABLE_CONFIG_TYPES: ReadonlySet<string> = new Set([OCI_CONFIG, DOCKER_CONFIG]);

export function isIndexType(mediaType: string): boolean {
  return INDEX_TYPES.has(mediaType);
}

/**
 * Layers a registry need not hold: non-distributable OCI layers and Docker
 * foreign layers are fetched from their `urls`, never pushed.
 */
export function isNonDistributable(mediaType: string): boolean {
  return mediaType.includes('.nondistributable.') || mediaType === DOCKER_FOREIGN_LAYER;
}

export type LayerCompression = 'none' | 'gzip' | 'zstd';

/** How a layer blob is compressed, or null when it is not a filesystem layer. */
export function layerCompression(mediaType: string): LayerCompression | null {
  switch (mediaType) {
    case OCI_LAYER:
    case OCI_LAYER_ND:
    case 'application/vnd.docker.image.rootfs.diff.tar':
      return 'none';
    case OCI_LAYER_GZIP:
    case OCI_LAYER_ND_GZIP:
    case DOCKER_LAYER_GZIP:
    case DOCKER_FOREIGN_LAYER:
      return 'gzip';
    case OCI_LAYER_ZSTD:
    case OCI_LAYER_ND_ZSTD:
    case DOCKER_LAYER_ZSTD:
      return 'zstd';
    default:
      return null;
  }
}

/** Strips parameters and whitespace: `application/json; charset=utf-8` → `application/json`. */
export function baseMediaType(contentType: string | undefined): string {
  if (!contentType) return '';
  const semi = contentType.indexOf(';');
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

// Added for classification and Docker → OCI normalization.

export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
export const DOCKER_FOREIGN_LAYER_TAR = 'application/vnd.docker.image.rootfs.foreign.diff.tar';

/** Annotation BuildKit puts on index entries that hold attestations (SBOM, provenance). */
export const DOCKER_REFERENCE_TYPE_ANNOTATION = 'vnd.docker.reference.type';
export const ATTESTATION_MANIFEST = 'attestation-manifest';

// Docker schema 2 media types and their OCI equivalents (same bytes on the wire).
const DOCKER_TO_OCI: ReadonlyMap<string, string> = new Map([
  [DOCKER_MANIFEST, OCI_MANIFEST],
  [DOCKER_LIST, OCI_INDEX],
  [DOCKER_CONFIG, OCI_CONFIG],
  [DOCKER_LAYER, OCI_LAYER],
  [DOCKER_LAYER_GZIP, OCI_LAYER_GZIP],
  [DOCKER_LAYER_ZSTD, OCI_LAYER_ZSTD],
  [DOCKER_FOREIGN_LAYER, OCI_LAYER_ND_GZIP],
  [DOCKER_FOREIGN_LAYER_TAR, OCI_LAYER_ND],
]);

/** The OCI media type equivalent to a Docker one; any other type is returned unchanged. */
export function toOciMediaType(mediaType: string): string {
  return DOCKER_TO_OCI.get(mediaType) ?? mediaType;
}

// RFC 6838 §4.2 names: type "/" subtype, each a restricted-name; parameters after ";" in printable ASCII.
const RESTRICTED_NAME = "[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}";
const MEDIA_TYPE_RE = new RegExp(`^${RESTRICTED_NAME}/${RESTRICTED_NAME}(?:\\s*;[\\x20-\\x7e]*)?$`);

/** Whether `value` is a media type as the image spec requires (RFC 6838), e.g. `application/vnd.oci.image.manifest.v1+json`. */
export function isMediaType(value: string): boolean {
  return MEDIA_TYPE_RE.test(value);
}
