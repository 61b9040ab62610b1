// /api/v1/images: list, inspect, bake on demand, download and delete disks.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AuthError, type Action, type Authorizer } from '../auth/authorizer.js';
import { parseRange } from '../registry/http.js';
import { ApiError } from '../server/api-errors.js';
import { apiHandler, authorizeApiCaller } from '../server/api-http.js';
import { parseImageRef } from './refs.js';
import type { ImageNameCursor } from '../store/image-store.js';
import type { DiskDownload, ImageService } from './service.js';

const BakeBody = z.object({ ref: z.string().min(1) });

/** Images per page of GET /api/v1/images, unless `limit` says otherwise. */
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

/** A cursor is opaque to clients: the last listed name's sort key. */
const Cursor = z.tuple([z.string().max(512), z.string().max(256).nullable(), z.string().max(200), z.string().max(200).nullable()]);

function formatCursor(c: ImageNameCursor): string {
  return Buffer.from(JSON.stringify([c.repo, c.tag, c.digest, c.indexDigest])).toString('base64url');
}

function parseCursor(text: string): ImageNameCursor {
  try {
    const [repo, tag, digest, indexDigest] = Cursor.parse(JSON.parse(Buffer.from(text, 'base64url').toString('utf8')));
    return { repo, tag, digest, indexDigest };
  } catch {
    throw new ApiError('BAD_REQUEST', 'cursor is not one this server handed out; start again without it, then follow `next`');
  }
}

export function registerImageRoutes(app: FastifyInstance, images: ImageService, authorizer: Authorizer): void {
  const allow = (req: FastifyRequest, repo: string | null, actions: Action[]) => authorizeApiCaller(authorizer, req, { repo, actions });

  const parseRef = (refText: string) => {
    try {
      return parseImageRef(refText);
    } catch (err) {
      throw new ApiError('BAD_REQUEST', (err as Error).message);
    }
  };

  /**
   * Authorizes against the repo named in the reference before looking anything up, so nothing leaks;
   * a bare digest names no repo, but the caller must still be one the API serves.
   */
  const lookup = async (req: FastifyRequest, refText: string, action: Action) => {
    const ref = parseRef(refText);
    await (ref.kind !== 'digest' ? allow(req, ref.repo, [action]) : allow(req, null, []));
    const { record, name, candidates } = await images.find(refText);
    if (name) return { record, name };
    // A bare digest: answer through a name the caller may use. Other tenants' names are never revealed.
    for (const candidate of candidates) {
      try {
        await allow(req, candidate.repo, [action]);
        return { record: await images.recordOf(candidate), name: candidate };
      } catch (err) {
        if (!(err instanceof AuthError) || err.status !== 403) throw err;
      }
    }
    throw new ApiError('NOT_FOUND', `no baked image for ${refText} that you may ${action}`);
  };

  const handle = apiHandler;

  app.get(
    '/api/v1/images',
    handle(async (req, reply) => {
      const decision = await allow(req, null, []);
      const query = req.query as { limit?: string; cursor?: string };
      const limit = query.limit === undefined || query.limit === '' ? DEFAULT_PAGE : Number(query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new ApiError('BAD_REQUEST', `limit must be a whole number from 1 to ${MAX_PAGE}`);
      const after = query.cursor === undefined || query.cursor === '' ? undefined : parseCursor(query.cursor);
      // The database pages through the repositories the caller may see, not through everyone's.
      const page = await images.list(decision.visible, decision.canPull, { after, limit });
      let next: string | null = null;
      if (page.next) {
        next = `/api/v1/images?${new URLSearchParams({ limit: String(limit), cursor: formatCursor(page.next) })}`;
        reply.header('link', `<${next}>; rel="next"`);
      }
      return { images: page.images, next };
    }),
  );

  app.post(
    '/api/v1/images/bake',
    handle(async (req, reply) => {
      // Who asks comes first: an anonymous caller learns nothing from how its request is answered.
      await allow(req, null, []);
      const { ref } = BakeBody.parse(req.body);
      const parsed = parseRef(ref);
      if (parsed.kind !== 'digest') await allow(req, parsed.repo, ['push']);
      const view = await images.requestBake(ref);
      reply.code(202);
      return view;
    }),
  );

  app.get(
    '/api/v1/images/*',
    handle(async (req, reply) => {
      const rest = (req.params as { '*': string })['*'];
      if (rest.endsWith('/disk')) {
        const { record } = await lookup(req, rest.slice(0, -'/disk'.length), 'pull');
        return sendDisk(req, reply, await images.disk(record));
      }
      const { record, name } = await lookup(req, rest, 'pull');
      return images.detail(record, name);
    }),
  );

  // HEAD of a disk: its size and range support, from Kiln (never redirected).
  app.head(
    '/api/v1/images/*',
    handle(async (req, reply) => {
      const rest = (req.params as { '*': string })['*'];
      if (!rest.endsWith('/disk')) throw new ApiError('NOT_FOUND', 'HEAD is answered for disks only (/api/v1/images/<ref>/disk)');
      const { record } = await lookup(req, rest.slice(0, -'/disk'.length), 'pull');
      return sendDisk(req, reply, await images.disk(record));
    }),
  );

  app.delete(
    '/api/v1/images/*',
    handle(async (req, reply) => {
      const { record, name } = await lookup(req, (req.params as { '*': string })['*'], 'delete');
      await images.deleteDisk(record, name);
      reply.code(204).send();
    }),
  );
}

/**
 * The disk: on an object store a GET is redirected (307) to a presigned URL
 * that serves the bytes and any Range itself (KILN_S3_REDIRECT, as for blob
 * GETs); otherwise Kiln streams it, ranges included. HEAD and the size come
 * from Kiln.
 */
async function sendDisk(req: FastifyRequest, reply: FastifyReply, disk: DiskDownload): Promise<void> {
  const { size } = disk;
  const range = parseRange(req.headers.range, size);
  if (range === 'invalid') {
    reply.header('content-range', `bytes */${size}`);
    throw new ApiError('RANGE_NOT_SATISFIABLE', `range ${req.headers.range} cannot be satisfied for ${size} bytes`);
  }
  const redirect = req.method === 'GET' && size > 0 ? await disk.redirectUrl() : null;
  if (redirect) {
    return void reply.code(307).header('location', redirect).header('x-kiln-disk-size', size).header('cache-control', 'no-store').header('content-length', 0).send();
  }
  // Opened before any header is set: a disk missing from storage is a clean 404.
  const body = req.method === 'HEAD' || size === 0 ? null : await disk.open(range ?? undefined);
  reply.header('content-type', 'application/octet-stream').header('accept-ranges', 'bytes');
  if (range) {
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', range.end - range.start + 1);
  } else {
    reply.header('content-length', size);
  }
  if (body) reply.send(body);
  else reply.send();
}
