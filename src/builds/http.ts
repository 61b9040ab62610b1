// /api/v1/builds: submit (multipart), list, inspect, follow logs (SSE), cancel.
//
// The tenant and its cache scope come from the caller's credential only. A
// tenant sees and cancels only its own builds (the auth policy's rights on
// builds/<id>, whose owner is the build's tenant); other builds answer 404.
// The listing is paged in the database by owner, so a tenant's page costs
// the same whatever other tenants have. With auth off every caller is an
// anonymous admin, so every build is an admin build (see service.ts).
//
// Log streams (Server-Sent Events) carry each line as an event whose id is
// its line number; a client that reconnects with Last-Event-ID gets the
// lines after it. A comment goes out whenever the stream has been quiet for
// KILN_BUILD_SSE_HEARTBEAT_SECONDS (a queued build, a long RUN step), so
// proxies do not drop the connection as idle.
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { AuthError, type Action, type AuthDecision, type Authorizer } from '../auth/authorizer.js';
import { ApiError } from '../server/api-errors.js';
import { apiHandler, authorizeApiCaller } from '../server/api-http.js';
import { BuildError } from './errors.js';
import type { BuildRecord, BuildStatus } from '../store/build-store.js';
import type { BuildCaller, BuildService, BuildSubmission, PendingSource } from './service.js';

export interface BuildRoutesOptions {
  /** Size cap of the uploaded source archive (KILN_BUILD_MAX_SOURCE_BYTES). */
  maxSourceBytes: number;
  /** A comment on a quiet event stream this often (KILN_BUILD_SSE_HEARTBEAT_SECONDS). */
  heartbeatMs: number;
}

const TEXT_FIELDS = ['dockerfile', 'build_args', 'global_cache_key', 'admin', 'timeout_seconds', 'platform', 'secrets'] as const;
type TextField = (typeof TEXT_FIELDS)[number];
const MAX_FIELD_BYTES = 1024 * 1024;
const BUILD_ID = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const STATUSES: readonly BuildStatus[] = ['queued', 'building', 'pushing', 'baking', 'ready', 'failed', 'cancelled'];
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

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
    const build = await builds.get(id);
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
      handle(async (req, reply) => {
        const decision = await allow(req, null, []);
        const query = req.query as { status?: string; n?: string; last?: string };
        const status = query.status === undefined || query.status === '' ? undefined : (query.status as BuildStatus);
        if (status !== undefined && !STATUSES.includes(status)) throw new ApiError('BAD_REQUEST', `status must be one of ${STATUSES.join(', ')}`);
        const limit = query.n === undefined || query.n === '' ? DEFAULT_PAGE : Number(query.n);
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new ApiError('BAD_REQUEST', `n must be a whole number from 1 to ${MAX_PAGE}`);
        const after = query.last === undefined || query.last === '' ? undefined : query.last;
        // Admins see every build; anyone else the builds of its own tenant, which owns them.
        const { principal } = decision;
        if (principal.role !== 'admin' && principal.tenant === null) return { builds: [], next: null };
        const tenant = principal.role === 'admin' ? undefined : principal.tenant!;
        // One more than asked says whether there is a next page.
        const page = await builds.list({ tenant, status, after, limit: limit + 1 });
        const shown = page.slice(0, limit);
        let next: string | null = null;
        if (page.length > limit) {
          const params = new URLSearchParams({ n: String(limit), last: shown.at(-1)!.id });
          if (status !== undefined) params.set('status', status);
          next = `/api/v1/builds?${params}`;
          reply.header('link', `<${next}>; rel="next"`);
        }
        return { builds: await builds.views(shown), next };
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
        if (build.filesRemovedAt !== null) {
          throw new ApiError('NOT_FOUND', `the log of build ${build.id} was removed on ${new Date(build.filesRemovedAt).toISOString()}, as ended builds' files are kept for KILN_BUILD_RETENTION`);
        }
        const follow = ['true', '1', 'yes'].includes(String((req.query as { follow?: string }).follow ?? '').toLowerCase());
        if (!follow) {
          // As blob GETs: a redirect to the object store when it offers one, else the bytes through Kiln.
          const download = await builds.logDownload(build.id);
          if (download !== null && 'redirect' in download) {
            return void reply.code(307).header('location', download.redirect).header('cache-control', 'no-store').header('content-length', 0).send();
          }
          reply.header('content-type', 'text/plain; charset=utf-8').send(download === null ? '' : download.body);
          return undefined;
        }
        const lastEventId = req.headers['last-event-id'];
        const after = typeof lastEventId === 'string' && /^\d+$/.test(lastEventId.trim()) ? Number(lastEventId.trim()) : undefined;
        await streamEvents(req, reply, build, after);
        return undefined;
      }),
    );
  });

  /** Server-Sent Events: one `data:` event per log line (its `id` the line number), then `event: end` with the build. */
  async function streamEvents(req: FastifyRequest, reply: FastifyReply, build: BuildRecord, after: number | undefined): Promise<void> {
    const id = build.id;
    reply.hijack();
    const res: ServerResponse = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    let closed = false;
    let lastWrite = Date.now();
    const send = (text: string) => {
      if (closed) return;
      lastWrite = Date.now();
      res.write(text);
    };
    send(`: build ${id}\n\n`);
    let stop: () => void = () => undefined;
    const heartbeat = setInterval(() => {
      if (Date.now() - lastWrite >= options.heartbeatMs - 5) send(': heartbeat\n\n');
    }, options.heartbeatMs);
    const close = () => {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      stop();
      streams.delete(close);
      res.end();
    };
    streams.add(close);
    // The response closes when the client goes away (the request's own 'close' may come earlier).
    res.once('close', close);
    try {
      stop = await builds.followLog(
        build,
        {
          line(text, index) {
            send(`id: ${index}\ndata: ${text}\n\n`);
          },
          end() {
            if (closed) return;
            void builds
              .get(id)
              .then((ended) => (ended === null ? { id } : builds.view(ended)))
              .then(
                (view) => send(`event: end\ndata: ${JSON.stringify(view)}\n\n`),
                (err: unknown) => req.log.error({ err, build: id }, 'reading a build for its end event failed'),
              )
              .finally(close);
          },
        },
        after,
      );
      if (closed) stop();
    } catch (err) {
      req.log.error({ err, build: id }, 'following a build log failed');
      send(`event: error\ndata: ${JSON.stringify({ message: 'reading the log failed; the server log has details' })}\n\n`);
      close();
    }
  }
}

function callerOf(decision: AuthDecision): BuildCaller {
  const { principal } = decision;
  if (principal.role !== 'admin' && principal.role !== 'tenant') {
    throw new AuthError(403, 'DENIED', 'only tenants and admins may start builds');
  }
  return { subject: principal.subject, role: principal.role, tenant: principal.tenant, canPull: (repo) => decision.canPull(repo), preparePull: decision.preparePull };
}

/** The form fields, checked for shape (the service checks their meaning). */
function parseFields(fields: Partial<Record<TextField, string>>, caller: BuildCaller): BuildSubmission {
  const submission: BuildSubmission = { caller };
  if (fields.dockerfile !== undefined && fields.dockerfile.trim() !== '') submission.dockerfile = fields.dockerfile;
  if (fields.build_args !== undefined && fields.build_args.trim() !== '') submission.buildArgs = parseBuildArgs(fields.build_args);
  if (fields.global_cache_key !== undefined && fields.global_cache_key.trim() !== '') submission.globalKey = fields.global_cache_key.trim();
  if (fields.platform !== undefined && fields.platform.trim() !== '') submission.platform = fields.platform.trim();
  if (fields.admin !== undefined) submission.admin = parseFlag(fields.admin, 'admin');
  if (fields.secrets !== undefined && fields.secrets.trim() !== '') submission.secrets = parseStringMap(fields.secrets, 'secrets', '{"npmrc":"//registry/:_authToken=…"}');
  if (fields.timeout_seconds !== undefined && fields.timeout_seconds.trim() !== '') {
    const n = Number(fields.timeout_seconds.trim());
    if (!Number.isInteger(n) || n <= 0) throw new ApiError('BAD_REQUEST', `timeout_seconds must be a positive whole number, got "${fields.timeout_seconds}"`);
    submission.timeoutSeconds = n;
  }
  return submission;
}

function parseBuildArgs(text: string): Record<string, string> {
  return parseStringMap(text, 'build_args', '{"NODE_ENV":"production"}');
}

/** A JSON object of strings; messages never quote values (they may be secrets). */
function parseStringMap(text: string, field: string, example: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ApiError('BAD_REQUEST', `${field} must be a JSON object of strings, e.g. ${example}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ApiError('BAD_REQUEST', `${field} must be a JSON object of strings, e.g. ${example}`);
  }
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (typeof value !== 'string') throw new ApiError('BAD_REQUEST', `${field}: "${name}" must have a string value`);
    out[name] = value;
  }
  return out;
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
    case 'limited':
      return new ApiError('TOO_MANY_REQUESTS', err.message);
    case 'unavailable':
      return new ApiError('UNAVAILABLE', err.message);
    case 'build-failed':
    case 'cancelled':
      return err;
  }
}
