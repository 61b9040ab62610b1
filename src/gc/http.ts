// POST /api/v1/gc: run a collection now (admin only). Body `{"dryRun": bool}`
// (optional); answers with the report.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AuthError, type Authorizer } from '../auth/authorizer.js';
import { ApiError, sendApiError } from '../server/api-errors.js';
import type { GarbageCollector } from './collector.js';

const GcBody = z.object({ dryRun: z.boolean().optional() }).strict();

export function registerGcRoutes(app: FastifyInstance, gc: GarbageCollector, authorizer: Authorizer): void {
  const baseUrl = (req: FastifyRequest) => `${req.protocol}://${req.headers.host ?? 'localhost'}`;
  app.post('/api/v1/gc', async (req, reply) => {
    try {
      const decision = await authorizer.authorize(req.headers, { repo: null, actions: [] }, baseUrl(req));
      if (authorizer.enabled && decision.principal.role === 'anonymous') {
        throw new AuthError(401, 'UNAUTHORIZED', 'the management API needs an API key: send Authorization: Bearer <key>');
      }
      if (decision.principal.role !== 'admin') throw new ApiError('DENIED', 'garbage collection is for admins; use an admin API key');
      const body = GcBody.parse(req.body ?? {});
      const report = await gc.run({ dryRun: body.dryRun ?? false, trigger: 'api' });
      return reply.code(200).header('content-type', 'application/json').send(JSON.stringify(report));
    } catch (err) {
      return sendApiError(req, reply, err);
    }
  });
}
