// The state of an S3 upload session, as saved in uploads/<id>/state after
// every chunk. Pure: the format and its checks.
import { z } from 'zod';

const part = z.object({
  /** Part number in the multipart upload (1..10000, ascending with the offset). */
  n: z.number().int().min(1).max(10_000),
  etag: z.string().min(1),
  size: z.number().int().min(1),
});

const schema = z.object({
  v: z.literal(1),
  /** Bumped by every chunk; the request that moves the session to seq N first writes claim-N. */
  seq: z.number().int().min(0),
  /** Bytes received: the parts, then the tail. */
  size: z.number().int().min(0),
  /** The multipart upload behind uploads/<id>/data, created when the first full part is ready. */
  multipart: z.object({ uploadId: z.string().min(1), parts: z.array(part) }).nullable(),
  /** Bytes after the last part (fewer than S3's minimum part), staged as an object of their own. */
  tail: z.object({ key: z.string().min(1), size: z.number().int().min(1) }).nullable(),
  /** Saved hash states (base64) by digest algorithm, of bytes 0..size. */
  digests: z.partialRecord(z.enum(['sha256', 'sha512']), z.string()),
});

export type UploadState = z.infer<typeof schema>;
export type UploadPart = z.infer<typeof part>;

export function parseUploadState(text: string): UploadState {
  const state = schema.parse(JSON.parse(text));
  const partBytes = (state.multipart?.parts ?? []).reduce((sum, p) => sum + p.size, 0);
  if (partBytes + (state.tail?.size ?? 0) !== state.size) throw new Error(`upload state is inconsistent: parts and tail hold ${partBytes + (state.tail?.size ?? 0)} bytes, size says ${state.size}`);
  return state;
}

export function serializeUploadState(state: UploadState): string {
  return JSON.stringify(state);
}

/** The part number the next part of this session gets. */
export function nextPartNumber(state: UploadState): number {
  const parts = state.multipart?.parts ?? [];
  return parts.length === 0 ? 1 : parts[parts.length - 1]!.n + 1;
}
