// /api/v1/tokens: create and revoke API keys on a running server (admin
// only), so `kiln token create --url` signs with the key the server checks
// instead of guessing its data directory.
//   POST   /api/v1/tokens        {"tenant"?: string, "admin"?: bool, "ttlSeconds": number} → 201 {token, jti, role, tenant, expiresAt}
//   DELETE /api/v1/tokens/{jti}  → {jti, outcome: "revoked" | "already_revoked"}; 404 when unknown
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ApiError } from '../server/api-errors.js';
import { apiHandler, authorizeApiCaller } from '../server/api-http.js';
import type { Authorizer } from './authorizer.js';
import type { AuthTokens } from './index.js';
import { TokenRequestError } from './token-service.js';

const CreateKey = z
  .object({
    tenant: z.string().min(1).optional(),
    admin: z.boolean().optional(),
    ttlSeconds: z.number().int().positive(),
  })
  .strict();

export function registerKeyRoutes(app: FastifyInstance, tokens: Pick<AuthTokens, 'createApiKey' | 'revoke'>, authorizer: Authorizer): void {
  const requireAdmin = async (req: FastifyRequest) => {
    const decision = await authorizeApiCaller(authorizer, req, { repo: null, actions: [] });
    if (decision.principal.role !== 'admin') throw new ApiError('DENIED', 'only an admin API key may create or revoke API keys');
  };

  app.post(
    '/api/v1/tokens',
    apiHandler(async (req, reply) => {
      await requireAdmin(req);
      const body = CreateKey.parse(req.body ?? {});
      try {
        const key = await tokens.createApiKey({ tenant: body.tenant ?? null, admin: body.admin ?? false, ttlSeconds: body.ttlSeconds });
        reply.code(201);
        return { token: key.token, jti: key.jti, role: key.role, tenant: key.tenant, expiresAt: key.expiresAt.toISOString() };
      } catch (err) {
        if (err instanceof TokenRequestError) throw new ApiError('BAD_REQUEST', err.message);
        throw err;
      }
    }),
  );

  app.delete(
    '/api/v1/tokens/:jti',
    apiHandler(async (req) => {
      await requireAdmin(req);
      const { jti } = req.params as { jti: string };
      const outcome = await tokens.revoke(jti);
      if (outcome === 'unknown') throw new ApiError('NOT_FOUND', `no API key has the id ${jti}`);
      return { jti, outcome };
    }),
  );
}
