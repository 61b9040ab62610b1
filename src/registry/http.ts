// The /v2 HTTP API (OCI Distribution Spec v1.1). Handlers are thin: parse the
// request, authorize, call RegistryService, write headers.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { AuthDecision, Authorizer } from '../auth/authorizer.js';
import { OCI_INDEX } from '../oci/media-types.js';
import { MAX_MANIFEST_BYTES } from '../oci/manifest.js';
import { RegistryError, isClientAbort, rangeHeader, reasonPhrase, toRegistryError } from './errors.js';
import { ROUTE_METHODS, matchV2Route, movesBlobData, requiredAction, type V2Route } from './routes.js';
import type { BlobSource } from '../store/types.js';
import type { RegistryService } from './service.js';
import type { TransferActivity } from './transfer-activity.js';
import { uploadOwner } from './upload-quota.js';

export interface V2Deps {
  service: RegistryService;
  authorizer: Authorizer;
  /** Told of every request that moves blob bytes, for as long as it runs. */
  transfers?: TransferActivity;
}

type Query = URLSearchParams;

const API_VERSION_HEADER = { 'docker-distribution-api-version': 'registry/2.0' } as const;

interface Ctx {
  req: FastifyRequest;
  reply: FastifyReply;
  query: Query;
  deps: V2Deps;
  baseUrl: string;
  /** Set once the request is authorized. */
  decision?: AuthDecision;
  /** The upload session's URL, for answers that leave the session open (416, 429). */
  uploadLocation?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Route label for metrics and logs, e.g. `manifest_get`. */
    kilnRoute: string;
  }
}

export async function registerV2Routes(app: FastifyInstance, deps: V2Deps): Promise<void> {
  app.decorateRequest('kilnRoute', '');
  await app.register(async (v2) => {
    // Bodies are streamed by the handlers themselves (blobs can be gigabytes).
    v2.removeAllContentTypeParsers();
    v2.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
    v2.addHook('onSend', async (_req, reply) => {
      reply.headers(API_VERSION_HEADER);
    });
    // Returning the reply tells fastify the response is ours, even while a stream is still being set up.
    const handler = async (req: FastifyRequest, reply: FastifyReply) => {
      await dispatch(req, reply, deps);
      return reply;
    };
    // OPTIONS too, so that it gets the spec's 405 error JSON (with Allow) rather than Fastify's 404.
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
    v2.route({ method: [...methods], url: '/v2', handler });
    v2.route({ method: [...methods], url: '/v2/*', handler });
  });
}

/**
 * Fastify's `frameworkErrors` hook: requests its router refuses before any
 * route runs (a path that is not valid percent-encoding) still get the
 * spec's error JSON under /v2.
 */
export function v2FrameworkErrors(error: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  if (!(req.raw.url ?? '').startsWith('/v2')) return void reply.code(error.statusCode ?? 400).send(error);
  const mapped = new RegistryError('NAME_INVALID', 'the request path is not valid percent-encoding');
  reply
    .code(mapped.status)
    .header('content-type', 'application/json; charset=utf-8')
    .headers(API_VERSION_HEADER)
    .send(JSON.stringify(mapped.toBody()));
}

async function dispatch(req: FastifyRequest, reply: FastifyReply, deps: V2Deps): Promise<void> {
  const rawUrl = req.raw.url ?? '/';
  const q = rawUrl.indexOf('?');
  const query = new URLSearchParams(q === -1 ? '' : rawUrl.slice(q + 1));
  const ctx: Ctx = { req, reply, query, deps, baseUrl: baseUrlOf(req) };
  try {
    let pathname: string;
    try {
      pathname = decodeURIComponent(q === -1 ? rawUrl : rawUrl.slice(0, q));
    } catch {
      throw new RegistryError('NAME_INVALID', 'the request path is not valid percent-encoding');
    }
    const route = matchV2Route(pathname);
    if (!route) throw new RegistryError('NAME_UNKNOWN', `no registry endpoint at ${pathname}`, undefined, {}, 404);
    req.kilnRoute = `${route.kind}_${req.method.toLowerCase()}`;
    if (!ROUTE_METHODS[route.kind].includes(req.method)) {
      throw new RegistryError('UNSUPPORTED', `${req.method} is not supported on this endpoint`, undefined, { allow: ROUTE_METHODS[route.kind].join(', ') }, 405);
    }
    if ('name' in route) deps.service.validateName(route.name);
    await route_(ctx, route);
  } catch (err) {
    sendError(ctx, err);
  }
}

async function route_(ctx: Ctx, route: V2Route): Promise<void> {
  const { req, deps } = ctx;
  const repo = 'name' in route ? route.name : null;
  const actions = route.kind === 'base' || route.kind === 'catalog' ? [] : [requiredAction(route, req.method)];
  const decision = await deps.authorizer.authorize(req.headers, { repo, actions, catalog: route.kind === 'catalog' }, ctx.baseUrl);
  ctx.decision = decision;
  // Counted only once allowed, so a refused client cannot hold bakes paused (src/jobs/bake-yield.ts).
  if (deps.transfers && movesBlobData(route, req.method)) deps.transfers.track(ctx.reply.raw);

  switch (route.kind) {
    case 'base':
      return void ctx.reply.code(200).header('content-type', 'application/json').send('{}');
    case 'catalog':
      return catalog(ctx, decision);
    case 'tags':
      return tagsList(ctx, route.name);
    case 'manifest':
      if (req.method === 'PUT') return putManifest(ctx, route.name, route.reference);
      if (req.method === 'DELETE') return deleteManifest(ctx, route.name, route.reference);
      return getManifest(ctx, route.name, route.reference);
    case 'blob':
      if (req.method === 'DELETE') return deleteBlob(ctx, route.name, route.digest);
      return getBlob(ctx, route.name, route.digest);
    case 'uploads':
      return startUpload(ctx, route.name);
    case 'upload':
      ctx.uploadLocation = uploadLocation(route.name, route.id);
      if (req.method === 'GET') return uploadStatus(ctx, route.name, route.id);
      if (req.method === 'PATCH') return patchUpload(ctx, route.name, route.id);
      if (req.method === 'PUT') return putUpload(ctx, route.name, route.id);
      return cancelUpload(ctx, route.name, route.id);
    case 'referrers':
      return referrers(ctx, route.name, route.digest);
  }
}

// ---- listings ---------------------------------------------------------------

function parsePage(query: Query): { last?: string; limit?: number } {
  const n = query.get('n');
  const last = query.get('last') ?? undefined;
  if (n === null || n === '') return { last };
  if (!/^\d+$/.test(n)) throw new RegistryError('PAGINATION_NUMBER_INVALID', `n must be a non-negative integer, got "${n}"`);
  return { last, limit: Math.min(Number(n), 100_000) };
}

/** Fetches one more than asked to learn whether a next page exists. */
async function paginate(page: { last?: string; limit?: number }, fetch: (p: { last?: string; limit?: number }) => Promise<string[]>) {
  if (page.limit === undefined) return { items: await fetch(page), more: false };
  if (page.limit === 0) return { items: [], more: false };
  const items = await fetch({ last: page.last, limit: page.limit + 1 });
  const more = items.length > page.limit;
  return { items: more ? items.slice(0, page.limit) : items, more };
}

function nextLink(path: string, n: number, last: string): string {
  return `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`;
}

async function catalog(ctx: Ctx, decision: AuthDecision): Promise<void> {
  const page = parsePage(ctx.query);
  const { items, more } = await paginate(page, (p) => ctx.deps.service.listRepos(p, decision.visible, decision.canPull, decision.preparePull));
  if (more) ctx.reply.header('link', nextLink('/v2/_catalog', page.limit!, items[items.length - 1]!));
  ctx.reply.code(200).header('content-type', 'application/json').send(JSON.stringify({ repositories: items }));
}

async function tagsList(ctx: Ctx, name: string): Promise<void> {
  const page = parsePage(ctx.query);
  const { items, more } = await paginate(page, (p) => ctx.deps.service.listTags(name, p));
  if (more) ctx.reply.header('link', nextLink(`/v2/${name}/tags/list`, page.limit!, items[items.length - 1]!));
  ctx.reply.code(200).header('content-type', 'application/json').send(JSON.stringify({ name, tags: items }));
}

async function referrers(ctx: Ctx, name: string, digest: string): Promise<void> {
  const artifactType = ctx.query.get('artifactType') ?? undefined;
  const index = await ctx.deps.service.referrers(name, digest, artifactType);
  if (artifactType !== undefined) ctx.reply.header('oci-filters-applied', 'artifactType');
  // A Buffer, not a string: Fastify would append "; charset=utf-8" to the spec's exact media type.
  ctx.reply.code(200).header('content-type', OCI_INDEX).send(Buffer.from(JSON.stringify(index)));
}

// ---- manifests ----------------------------------------------------------------

async function getManifest(ctx: Ctx, name: string, reference: string): Promise<void> {
  const { reply } = ctx;
  if (ctx.req.method === 'HEAD') {
    const record = await ctx.deps.service.findManifest(name, reference);
    manifestHeaders(reply, record.mediaType, record.digest, record.size);
    return void reply.code(200).send();
  }
  const { record, bytes } = await ctx.deps.service.readManifest(name, reference);
  manifestHeaders(reply, record.mediaType, record.digest, bytes.length);
  reply.code(200).send(bytes);
}

function manifestHeaders(reply: FastifyReply, mediaType: string, digest: string, size: number): void {
  reply.header('content-type', mediaType).header('docker-content-digest', digest).header('etag', `"${digest}"`).header('content-length', size);
}

async function putManifest(ctx: Ctx, name: string, reference: string): Promise<void> {
  const bytes = await readLimited(ctx.req.raw, MAX_MANIFEST_BYTES);
  const { digest, subject } = await ctx.deps.service.putManifest(name, reference, bytes, ctx.req.headers['content-type']);
  if (subject) ctx.reply.header('oci-subject', subject);
  ctx.reply
    .code(201)
    .header('location', `/v2/${name}/manifests/${digest}`)
    .header('docker-content-digest', digest)
    .header('content-length', 0)
    .send();
}

async function deleteManifest(ctx: Ctx, name: string, reference: string): Promise<void> {
  await ctx.deps.service.deleteManifest(name, reference);
  ctx.reply.code(202).header('content-length', 0).send();
}

// ---- blobs ----------------------------------------------------------------------

async function getBlob(ctx: Ctx, name: string, digest: string): Promise<void> {
  const { reply, req, deps } = ctx;
  const size = await deps.service.blobSize(name, digest);
  const range = parseRange(req.headers.range, size);
  if (range === 'invalid') {
    throw new RegistryError('RANGE_INVALID', `range ${req.headers.range} cannot be satisfied for a blob of ${size} bytes`, undefined, {
      'content-range': `bytes */${size}`,
    });
  }
  const bytes = range ?? { start: 0, end: size - 1 };
  const length = bytes.end - bytes.start + 1;
  // An object store serves the bytes (and the Range) itself; HEAD and the headers stay Kiln's.
  const redirect = req.method === 'GET' && length > 0 ? await deps.service.blobRedirect(digest) : null;
  if (redirect) {
    return void reply.code(307).header('location', redirect).header('docker-content-digest', digest).header('cache-control', 'no-store').header('content-length', 0).send();
  }
  // Opened (or checked) before any header is set: a blob missing from disk must be a clean 404, not a 206 carrying an error body.
  const source = req.method === 'HEAD' || length === 0 ? null : await deps.service.openBlob(name, digest, bytes);
  if (!source) await deps.service.assertBlobStored(name, digest);
  reply
    .header('content-type', 'application/octet-stream')
    .header('docker-content-digest', digest)
    .header('etag', `"${digest}"`)
    .header('accept-ranges', 'bytes')
    .header('cache-control', 'max-age=31536000')
    .header('content-length', length);
  if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`);
  else reply.code(200);
  if (!source) return void reply.send();
  sendBlobBody(ctx, source);
}

/**
 * Writes the head, then lets the blob store copy the body straight into the
 * socket (with reused buffers: see store/fs/file-copy.ts). The reply is
 * hijacked, so the headers onSend would add are written here; onResponse
 * hooks (metrics) still run.
 */
function sendBlobBody(ctx: Ctx, source: BlobSource): void {
  const { reply, req } = ctx;
  reply.hijack();
  reply.raw.writeHead(reply.statusCode, { ...(reply.getHeaders() as OutgoingHttpHeaders), ...API_VERSION_HEADER });
  source.copyTo(reply.raw).catch((err) => req.log.warn({ err, url: req.url }, 'blob read failed while it was being sent'));
}

/** A single `bytes=` range (the only form registries are asked for); null when absent. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'invalid' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid';
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'invalid';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start > end || start >= size) return 'invalid';
  return { start, end };
}

async function deleteBlob(ctx: Ctx, name: string, digest: string): Promise<void> {
  await ctx.deps.service.deleteBlob(name, digest);
  ctx.reply.code(202).header('content-length', 0).send();
}

// ---- uploads --------------------------------------------------------------------

async function startUpload(ctx: Ctx, name: string): Promise<void> {
  const { query, deps, req } = ctx;
  const mount = query.get('mount');
  const from = query.get('from');
  if (mount) {
    const mounted = from ? await tryMount(ctx, name, from, mount) : await tryMountFromAnywhere(ctx, name, mount);
    if (mounted) return blobCreated(ctx, name, mount);
  }
  const owner = ownerOf(ctx, name);
  const digestParam = query.get('digest');
  if (digestParam) {
    const digest = deps.service.parseDigestParam(digestParam);
    await deps.service.uploadBlob(name, owner, digest, req.raw, contentLength(req.raw));
    return blobCreated(ctx, name, digest.digest);
  }
  const id = await deps.service.startUpload(name, owner);
  uploadAccepted(ctx, name, id, 0);
}

function ownerOf(ctx: Ctx, repo: string): string {
  return uploadOwner(ctx.decision!.principal, repo, ctx.deps.authorizer.enabled);
}

/** Mounting needs pull on the source repo; when that is refused the client just uploads. */
async function tryMount(ctx: Ctx, name: string, from: string, digest: string): Promise<boolean> {
  try {
    await ctx.deps.authorizer.authorize(ctx.req.headers, { repo: from, actions: ['pull'] }, ctx.baseUrl);
  } catch {
    return false;
  }
  return (await ctx.deps.service.mountBlob(name, from, digest)) !== null;
}

/** `?mount=` without `from`: any repository the caller may pull that holds the blob will do. */
async function tryMountFromAnywhere(ctx: Ctx, name: string, digest: string): Promise<boolean> {
  const { visible, canPull, preparePull } = ctx.decision!;
  return (await ctx.deps.service.mountBlobFromAnywhere(name, digest, visible, canPull, preparePull)) !== null;
}

async function uploadStatus(ctx: Ctx, name: string, id: string): Promise<void> {
  const size = await ctx.deps.service.uploadSize(name, id);
  ctx.reply
    .code(204)
    .header('location', uploadLocation(name, id))
    .header('range', rangeHeader(size))
    .header('docker-upload-uuid', id)
    .send();
}

/** Where a chunk starts and how long it is, from Content-Range and Content-Length (which must agree). */
function chunkOf(req: IncomingMessage): { offset?: number; length?: number } {
  const declared = contentLength(req);
  const contentRange = req.headers['content-range'];
  if (contentRange === undefined) return { length: declared };
  const m = /^(?:bytes )?(\d+)-(\d+)$/.exec(contentRange.trim());
  if (!m || Number(m[2]) < Number(m[1])) {
    throw new RegistryError('RANGE_INVALID', `Content-Range "${contentRange}" must be <start>-<end> with end >= start`);
  }
  const offset = Number(m[1]);
  const length = Number(m[2]) - offset + 1;
  if (declared !== undefined && declared !== length) {
    throw new RegistryError('RANGE_INVALID', `Content-Range covers ${length} bytes but Content-Length is ${declared}`);
  }
  return { offset, length };
}

async function patchUpload(ctx: Ctx, name: string, id: string): Promise<void> {
  const { req, deps } = ctx;
  const { offset, length } = chunkOf(req.raw);
  const size = await deps.service.appendUpload(name, id, req.raw, offset, length);
  uploadAccepted(ctx, name, id, size);
}

async function putUpload(ctx: Ctx, name: string, id: string): Promise<void> {
  const { req, deps, query } = ctx;
  const digestParam = query.get('digest');
  if (!digestParam) throw new RegistryError('DIGEST_INVALID', 'completing an upload needs the ?digest= query parameter');
  const digest = deps.service.parseDigestParam(digestParam);
  const { offset, length } = chunkOf(req.raw);
  const hasBody = (length !== undefined && length > 0) || req.headers['transfer-encoding'] !== undefined;
  await deps.service.finishUpload(name, id, digest, hasBody ? req.raw : undefined, length, offset);
  blobCreated(ctx, name, digest.digest);
}

async function cancelUpload(ctx: Ctx, name: string, id: string): Promise<void> {
  await ctx.deps.service.cancelUpload(name, id);
  ctx.reply.code(204).send();
}

function uploadLocation(name: string, id: string): string {
  return `/v2/${name}/blobs/uploads/${id}`;
}

function uploadAccepted(ctx: Ctx, name: string, id: string, size: number): void {
  ctx.reply
    .code(202)
    .header('location', uploadLocation(name, id))
    .header('range', rangeHeader(size))
    .header('docker-upload-uuid', id)
    .header('content-length', 0)
    .send();
}

function blobCreated(ctx: Ctx, name: string, digest: string): void {
  ctx.reply
    .code(201)
    .header('location', `/v2/${name}/blobs/${digest}`)
    .header('docker-content-digest', digest)
    .header('content-length', 0)
    .send();
}

// ---- plumbing ---------------------------------------------------------------------

function contentLength(req: IncomingMessage): number | undefined {
  const value = req.headers['content-length'];
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Reads a small body (a manifest) whole, refusing more than `limit` bytes. */
async function readLimited(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = contentLength(req);
  if (declared !== undefined && declared > limit) {
    throw new RegistryError('PAYLOAD_TOO_LARGE', `manifest is ${declared} bytes; the limit is ${limit}`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    total += (chunk as Buffer).length;
    if (total > limit) throw new RegistryError('PAYLOAD_TOO_LARGE', `manifest is larger than the ${limit}-byte limit`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

function baseUrlOf(req: FastifyRequest): string {
  return `${req.protocol}://${req.headers.host ?? 'localhost'}`;
}

function sendError(ctx: Ctx, err: unknown): void {
  const { reply, req } = ctx;
  const mapped = toRegistryError(err, { bodiless: req.method === 'HEAD' });
  if (mapped.code === 'INTERNAL') req.log.error({ err, url: req.url }, 'request failed');
  else if (isClientAbort(err)) req.log.info({ url: req.url }, 'client went away mid-request');
  if (reply.sent) return;
  for (const [k, v] of Object.entries(mapped.headers)) reply.header(k, v);
  if (ctx.uploadLocation && (mapped.status === 416 || mapped.status === 429)) reply.header('location', ctx.uploadLocation);
  reply.code(mapped.status).header('content-type', 'application/json; charset=utf-8');
  reply.raw.statusMessage = reasonPhrase(mapped.message);
  if (req.method === 'HEAD') return void reply.send();
  reply.send(JSON.stringify(mapped.toBody()));
}
