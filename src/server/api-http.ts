// Shared plumbing of the management API (/api/v1) handlers: who the caller
// is, and one way to turn a handler's result or error into a response.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthError, type AccessRequest, type AuthDecision, type Authorizer } from '../auth/authorizer.js';
import { sendApiError } from './api-errors.js';

/** The server's external URL as this client reached it (for token challenges). */
export function baseUrlOf(req: FastifyRequest): string {
  return `${req.protocol}://${req.headers.host ?? 'localhost'}`;
}

/**
 * Authorizes a management API call. An anonymous registry token is valid on
 * /v2 (it grants nothing); the management API wants a real caller.
 */
export async function authorizeApiCaller(authorizer: Authorizer, req: FastifyRequest, access: AccessRequest): Promise<AuthDecision> {
  const decision = await authorizer.authorize(req.headers, access, baseUrlOf(req));
  if (authorizer.enabled && decision.principal.role === 'anonymous') {
    throw new AuthError(401, 'UNAUTHORIZED', 'the management API needs an API key: send Authorization: Bearer <key>');
  }
  return decision;
}

/**
 * Wraps a handler: a returned value is sent as JSON, a thrown error goes
 * through the API's one error mapping. An error after the answer began
 * (a stream) can only cut the connection.
 */
export function apiHandler(fn: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>, mapError: (err: unknown) => unknown = (e) => e) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    try {
      const body = await fn(req, reply);
      if (!reply.sent && body !== undefined) reply.header('content-type', 'application/json').send(JSON.stringify(body));
    } catch (err) {
      if (reply.raw.headersSent) {
        req.log.error({ err, url: req.url }, 'request failed after the answer began');
        reply.raw.destroy();
      } else {
        sendApiError(req, reply, mapError(err));
      }
    }
    return reply;
  };
}
