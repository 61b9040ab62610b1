// /api/v1/builds: submit (multipart), list, inspect, follow logs (SSE), cancel.
//
// The tenant and its cache scope come from the caller's credential only. A
// tenant sees and cancels only its own builds (the auth policy's rights on
// builds/<id>, whose owner is the build's tenant); other builds answer 404.
// With auth off every caller is an anonymous admin, so every build is an
// admin build (see service.ts).
import multipart from '@fastify/multipart';
import { createReadStream } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { AuthError, type Action, type AuthDecision, type Authorizer } from '../auth/authorizer.js';
import { ApiError } from '../server/api-errors.js';
import { apiHandler, authorizeApiCaller } from '../server/api-http.js';
import { BuildError } from './errors.js';
import type { BuildCaller, BuildService, BuildSubmission, PendingSource } from './service.js';

export interface BuildRoutesOptions {
  /** Size cap of the uploaded source archive (KILN_BUILD_MAX_SOURCE_BYTES). */
  maxSourceBytes: number;
}

const TEXT_FIELDS = ['dockerfile', 'build_args', 'global_cache_key', 'admin', 'timeout_seconds', 'platform'] as const;
type TextField = (typeof TEXT_FIELDS)[number];
const MAX_FIELD_BYTES = 1024 * 1024;
const BUILD_ID = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const KEEPALIVE_MS = 15_000;

export function registerBuildRoutes(app: FastifyInstance, builds: BuildService, authorizer: Authorizer, options: BuildRoutesOptions): void {
  /** The caller, who must be a real one: no anonymous caller when auth is on, and no build token. */
  const allow = async (req: FastifyRequest, repo: string | null, actions: Action[]): Promise<AuthDecision> => {
    const decision = await authorizeApiCaller(authorizer, req, { repo, actions });
    if (decision.principal.role === 'build') throw new AuthError(403, 'DENIED', 'a build token cannot use the builds API; use an API key');
    return decision;
  };

  /** The build `id` if the caller may take `action` on it; otherwise "no such build", so nothing leaks. */
  const lookup = async (req: FastifyRequest, action: Action) => {
    const id = (req.params as { id: string }).id;
    const notFound = new ApiError('NOT_FOUND', `no build ${id}`);
    if (!BUILD_ID.test(id)) {
      await allow(req, null, []);
      throw notFound;
    }
    try {
      await allow(req, `builds/${id}`, [action]);
    } catch (err) {
      if (err instanceof AuthError && err.status === 403) throw notFound;
      throw err;
    }
    const build = builds.get(id);
    if (build === null) throw notFound;
    return build;
  };

  const handle = (fn: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>) => apiHandler(fn, toApiError);

  // Event streams end when the server closes, or it would wait for them.
  const streams = new Set<() => void>();

  app.register(async (scope) => {
    await scope.register(multipart, {
      limits: { fileSize: options.maxSourceBytes, files: 1 + TEXT_FIELDS.length, fields: TEXT_FIELDS.length, fieldSize: MAX_FIELD_BYTES, parts: 20 },
    });
    scope.addHook('preClose', async () => {
      for (const end of [...streams]) end();
    });

    scope.post(
      '/api/v1/builds',
      handle(async (req, reply) => {
        const decision = await allow(req, null, []);
        const caller = callerOf(decision);
        if (!req.isMultipart()) {
          throw new ApiError('BAD_REQUEST', 'send multipart/form-data: a "source" file (tar or tar.gz of the build context) and optional fields ' + TEXT_FIELDS.join(', '));
        }
        let pending: PendingSource | null = null;
        try {
          const fields: Partial<Record<TextField, string>> = {};
          for await (const part of req.parts()) {
            if (part.type === 'file' && part.fieldname === 'source') {
              if (pending !== null) throw new ApiError('BAD_REQUEST', 'send one "source" file');
              pending = await builds.receiveSource(part.file);
              if (part.file.truncated) {
                throw new ApiError('PAYLOAD_TOO_LARGE', `the source archive is larger than ${options.maxSourceBytes} bytes (KILN_BUILD_MAX_SOURCE_BYTES)`);
              }
              continue;
            }
            const name = part.fieldname as TextField;
            if (!TEXT_FIELDS.includes(name)) {
              if (part.type === 'file') part.file.resume();
              throw new ApiError('BAD_REQUEST', `unknown field "${part.fieldname}"; send source and optionally ${TEXT_FIELDS.join(', ')}`);
            }
            if (part.type === 'file') {
              fields[name] = await readCapped(part.file, MAX_FIELD_BYTES, name);
            } else {
              if (part.valueTruncated) throw new ApiError('BAD_REQUEST', `${name} is longer than ${MAX_FIELD_BYTES} bytes`);
              fields[name] = String(part.value);
            }
          }
          if (pending === null) {
            throw new ApiError('BAD_REQUEST', 'no source: send the build context as a tar or tar.gz file in the multipart field "source"');
          }
          const submission = parseFields(fields, caller);
          const accepted: PendingSource = pending;
          pending = null; // submit() owns it now, and discards it if it refuses the build
          const { build, queuePosition } = await builds.submit(accepted, submission);
          reply.code(202).header('location', `/api/v1/builds/${build.id}`);
          return { id: build.id, status: 'queued', queue_position: queuePosition };
        } finally {
          if (pending !== null) await builds.discard(pending);
        }
      }),
    );

    scope.get(
      '/api/v1/builds',
      handle(async (req) => {
        const decision = await allow(req, null, []);
        const status = (req.query as { status?: string }).status;
        const visible = builds.list().filter((b) => decision.canPull(`builds/${b.id}`) && (status === undefined || b.status === status));
        return { builds: visible.map((b) => builds.view(b)) };
      }),
    );

    scope.get(
      '/api/v1/builds/:id',
      handle(async (req) => builds.view(await lookup(req, 'pull'))),
    );

    scope.delete(
      '/api/v1/builds/:id',
      handle(async (req) => builds.view(await builds.cancel((await lookup(req, 'delete')).id))),
    );

    scope.get(
      '/api/v1/builds/:id/logs',
      handle(async (req, reply) => {
        const build = await lookup(req, 'pull');
        const follow = ['true', '1', 'yes'].includes(String((req.query as { follow?: string }).follow ?? '').toLowerCase());
        if (!follow) {
          const file = builds.logFile(build.id);
          const stream = createReadStream(file);
          const opened = await new Promise<boolean>((resolve) => {
            stream.once('open', () => resolve(true));
            stream.once('error', () => resolve(false));
          });
          reply.header('content-type', 'text/plain; charset=utf-8').send(opened ? stream : '');
          return undefined;
        }
        await streamEvents(req, reply, build.id);
        return undefined;
      }),
    );
  });

  /** Server-Sent Events: one `data:` event per log line (its `id` the line number), then `event: end` with the build. */
  async function streamEvents(req: FastifyRequest, reply: FastifyReply, id: string): Promise<void> {
    reply.hijack();
    const res: ServerResponse = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`: build ${id}\n\n`);
    let closed = false;
    let stop: () => void = () => undefined;
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
    const close = () => {
      if (closed) return;
      closed = true;
      clearInterval(keepalive);
      stop();
      streams.delete(close);
      res.end();
    };
    streams.add(close);
    // The response closes when the client goes away (the request's own 'close' may come earlier).
    res.once('close', close);
    try {
      stop = await builds.followLog(id, {
        line(text, index) {
          if (!closed) res.write(`id: ${index}\ndata: ${text}\n\n`);
        },
        end() {
          if (closed) return;
          const build = builds.get(id);
          res.write(`event: end\ndata: ${JSON.stringify(build === null ? { id } : builds.view(build))}\n\n`);
          close();
        },
      });
      if (closed) stop();
    } catch (err) {
      req.log.error({ err, build: id }, 'following a build log failed');
      if (!closed) res.write(`event: error\ndata: ${JSON.stringify({ message: 'reading the log failed; the server log has details' })}\n\n`);
      close();
    }
  }
}

function callerOf(decision: AuthDecision): BuildCaller {
  const { principal } = decision;
  if (principal.role !== 'admin' && principal.role !== 'tenant') {
    throw new AuthError(403, 'DENIED', 'only tenants and admins may start builds');
  }
  return { subject: principal.subject, role: principal.role, tenant: principal.tenant, canPull: (repo) => decision.canPull(repo) };
}

/** The form fields, checked for shape (the service checks their meaning). */
function parseFields(fields: Partial<Record<TextField, string>>, caller: BuildCaller): BuildSubmission {
  const submission: BuildSubmission = { caller };
  if (fields.dockerfile !== undefined && fields.dockerfile.trim() !== '') submission.dockerfile = fields.dockerfile;
  if (fields.build_args !== undefined && fields.build_args.trim() !== '') submission.buildArgs = parseBuildArgs(fields.build_args);
  if (fields.global_cache_key !== undefined && fields.global_cache_key.trim() !== '') submission.globalKey = fields.global_cache_key.trim();
  if (fields.platform !== undefined && fields.platform.trim() !== '') submission.platform = fields.platform.trim();
  if (fields.admin !== undefined) submission.admin = parseFlag(fields.admin, 'admin');
  if (fields.timeout_seconds !== undefined && fields.timeout_seconds.trim() !== '') {
    const n = Number(fields.timeout_seconds.trim());
    if (!Number.isInteger(n) || n <= 0) throw new ApiError('BAD_REQUEST', `timeout_seconds must be a positive whole number, got "${fields.timeout_seconds}"`);
    submission.timeoutSeconds = n;
  }
  return submission;
}

function parseBuildArgs(text: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ApiError('BAD_REQUEST', 'build_args must be a JSON object of strings, e.g. {"NODE_ENV":"production"}');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ApiError('BAD_REQUEST', 'build_args must be a JSON object of strings, e.g. {"NODE_ENV":"production"}');
  }
  const args: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (typeof value !== 'string') throw new ApiError('BAD_REQUEST', `build arg "${name}" must be a string (quote numbers: "${String(value)}")`);
    args[name] = value;
  }
  return args;
}

function parseFlag(text: string, name: string): boolean {
  const v = text.trim().toLowerCase();
  if (['', '0', 'false', 'no', 'off'].includes(v)) return false;
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  throw new ApiError('BAD_REQUEST', `${name} must be true or false, got "${text}"`);
}

async function readCapped(stream: Readable, max: number, name: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > max) {
      stream.resume();
      throw new ApiError('BAD_REQUEST', `${name} is longer than ${max} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The builds domain's errors, as the management API answers them. */
function toApiError(err: unknown): unknown {
  if (!(err instanceof BuildError)) return err;
  switch (err.kind) {
    case 'invalid-input':
      return new ApiError('BAD_REQUEST', err.message);
    case 'denied':
      return new ApiError('DENIED', err.message);
    case 'not-found':
      return new ApiError('NOT_FOUND', err.message);
    case 'conflict':
      return new ApiError('CONFLICT', err.message);
    case 'build-failed':
    case 'cancelled':
      return err;
  }
}
