// POST /api/v1/gc: run a collection now (admin only). Body `{"dryRun": bool}`
// (optional); answers with the report.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Authorizer } from '../auth/authorizer.js';
import { ApiError } from '../server/api-errors.js';
import { apiHandler, authorizeApiCaller } from '../server/api-http.js';
import type { GarbageCollector } from './collector.js';

const GcBody = z.object({ dryRun: z.boolean().optional() }).strict();

export function registerGcRoutes(app: FastifyInstance, gc: GarbageCollector, authorizer: Authorizer): void {
  app.post(
    '/api/v1/gc',
    apiHandler(async (req) => {
      const decision = await authorizeApiCaller(authorizer, req, { repo: null, actions: [] });
      if (decision.principal.role !== 'admin') throw new ApiError('DENIED', 'garbage collection is for admins; use an admin API key');
      const body = GcBody.parse(req.body ?? {});
      return gc.run({ dryRun: body.dryRun ?? false, trigger: 'api' });
    }),
  );
}
