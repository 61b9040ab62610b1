// Errors of the management API (/api/v1) and their one mapping to HTTP.
// Bodies are `{"error": {"code", "message"}}`.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ZodError } from 'zod';
import { AuthError } from '../auth/authorizer.js';

export type ApiErrorCode = 'BAD_REQUEST' | 'NOT_FOUND' | 'CONFLICT' | 'NOT_RUNNABLE' | 'NOT_READY' | 'PAYLOAD_TOO_LARGE' | 'RANGE_NOT_SATISFIABLE' | 'UNAUTHORIZED' | 'DENIED' | 'TOO_MANY_REQUESTS' | 'UNAVAILABLE' | 'INTERNAL';

const STATUS: Record<ApiErrorCode, number> = {
  BAD_REQUEST: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  NOT_RUNNABLE: 422,
  NOT_READY: 409,
  PAYLOAD_TOO_LARGE: 413,
  RANGE_NOT_SATISFIABLE: 416,
  UNAUTHORIZED: 401,
  DENIED: 403,
  TOO_MANY_REQUESTS: 429,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get status(): number {
    return STATUS[this.code];
  }
}

export function sendApiError(req: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  let status: number;
  let code: string;
  let message: string;
  if (err instanceof ApiError) {
    ({ status, code, message } = err);
  } else if (err instanceof AuthError) {
    ({ status, code, message } = err);
    if (err.challenge) reply.header('www-authenticate', err.challenge);
  } else if (err instanceof ZodError) {
    status = 400;
    code = 'BAD_REQUEST';
    message = err.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
  } else if ((err as { statusCode?: number }).statusCode && (err as { statusCode: number }).statusCode < 500) {
    // Fastify's own client errors (bad JSON, body too large).
    status = (err as { statusCode: number }).statusCode;
    code = status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST';
    message = (err as Error).message;
  } else {
    req.log.error({ err, url: req.url }, 'api request failed');
    status = 500;
    code = 'INTERNAL';
    message = 'internal error; the server log has details';
  }
  return reply.code(status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify({ error: { code, message } }));
}
