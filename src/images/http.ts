// /api/v1/images: list, inspect, bake on demand, download and delete disks.
import { createReadStream } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AuthError, type Action, type Authorizer } from '../auth/authorizer.js';
import { parseRange } from '../registry/http.js';
import { ApiError } from '../server/api-errors.js';
import { apiHandler, authorizeApiCaller } from '../server/api-http.js';
import { parseImageRef } from './refs.js';
import type { ImageService } from './service.js';

const BakeBody = z.object({ ref: z.string().min(1) });

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
    const { record, name } = await images.find(refText);
    if (name) return { record, name };
    // A bare digest: answer through a name the caller may use. Other tenants' names are never revealed.
    for (const candidate of record.names) {
      try {
        await allow(req, candidate.repo, [action]);
        return { record, name: candidate };
      } catch (err) {
        if (!(err instanceof AuthError) || err.status !== 403) throw err;
      }
    }
    throw new ApiError('NOT_FOUND', `no baked image for ${refText} that you may ${action}`);
  };

  const handle = apiHandler;

  app.get(
    '/api/v1/images',
    handle(async (req) => {
      const decision = await allow(req, null, []);
      return { images: await images.list(decision.canPull) };
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
        const { file, size } = await images.disk(record);
        return sendFile(req, reply, file, size);
      }
      const { record, name } = await lookup(req, rest, 'pull');
      return images.detail(record, name);
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

function sendFile(req: FastifyRequest, reply: FastifyReply, file: string, size: number): void {
  const range = parseRange(req.headers.range, size);
  if (range === 'invalid') {
    reply.header('content-range', `bytes */${size}`);
    throw new ApiError('RANGE_NOT_SATISFIABLE', `range ${req.headers.range} cannot be satisfied for ${size} bytes`);
  }
  reply.header('content-type', 'application/octet-stream').header('accept-ranges', 'bytes');
  if (range) {
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', range.end - range.start + 1);
  } else {
    reply.header('content-length', size);
  }
  reply.send(createReadStream(file, { start: range ? range.start : 0, end: range ? range.end : undefined, highWaterMark: 1 << 20 }));
}
