// Per-request deadlines (the connection-level ones are in connection-guard.ts
// and Node's headersTimeout): a plain request's body must arrive within the
// request timeout; a blob body, either way, must keep a minimum rate while
// the client is the one moving it. A client that misses either is cut off.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requestKind } from './request-kind.js';

export interface DeadlineOptions {
  requestTimeoutMs: number;
  /** 0 turns the rate check off. */
  minBytesPerSecond: number;
  rateWindowMs: number;
  settingNames: { requestTimeout: string; minBytesPerSecond: string };
  onCutOff(limit: 'requestTimeoutMs' | 'minBytesPerSecond'): void;
}

/** Time the client gets to read the 408 before its connection is closed. */
const CLOSE_AFTER_ANSWER_MS = 1000;

export function installRequestDeadlines(app: FastifyInstance, options: DeadlineOptions): void {
  app.addHook('onRequest', async (req, reply) => {
    const kind = requestKind(req.method, req.raw.url ?? '/');
    if (kind === 'plain') watchBodyDeadline(req, options);
    else if (kind === 'upload' || kind === 'download') watchRate(req, reply, options);
  });
}

function watchBodyDeadline(req: FastifyRequest, options: DeadlineOptions): void {
  const raw = req.raw;
  if (raw.complete) return;
  const timer = setTimeout(() => {
    if (raw.complete || raw.socket.destroyed) return;
    options.onCutOff('requestTimeoutMs');
    req.log.warn({ url: req.url, remote: raw.socket.remoteAddress }, 'request body did not arrive within the request timeout');
    const res = raw.socket;
    const message = `the request body did not arrive within ${options.requestTimeoutMs / 1000} s (${options.settingNames.requestTimeout})`;
    // Each API's own error shape: the registry's (code UNKNOWN: the spec has no timeout code) or the management API's.
    const body = (raw.url ?? '').startsWith('/v2')
      ? JSON.stringify({ errors: [{ code: 'UNKNOWN', message, detail: {} }] })
      : JSON.stringify({ error: { code: 'REQUEST_TIMEOUT', message } });
    // Written to the socket itself: the handler is still waiting for the body and owns the reply.
    res.end(
      `HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    setTimeout(() => res.destroy(), CLOSE_AFTER_ANSWER_MS).unref();
  }, options.requestTimeoutMs);
  timer.unref();
  const clear = () => clearTimeout(timer);
  raw.once('end', clear);
  raw.once('close', clear);
}

/**
 * Every window, the bytes moved on the connection (in while the body is
 * still arriving, out once the answer is streaming) must reach the minimum
 * rate. Time the server itself spends (verifying a finished upload, opening
 * a blob) is not counted against the client.
 */
function watchRate(req: FastifyRequest, reply: FastifyReply, options: DeadlineOptions): void {
  if (options.minBytesPerSecond <= 0) return;
  const socket = req.raw.socket;
  const res = reply.raw;
  const minimum = (options.minBytesPerSecond * options.rateWindowMs) / 1000;
  let last = socket.bytesRead + socket.bytesWritten;
  const timer = setInterval(() => {
    const now = socket.bytesRead + socket.bytesWritten;
    const moved = now - last;
    last = now;
    const clientsTurn = !req.raw.complete || (res.headersSent && !res.writableFinished);
    if (!clientsTurn || moved >= minimum || socket.destroyed) return;
    options.onCutOff('minBytesPerSecond');
    req.log.warn(
      { url: req.url, remote: socket.remoteAddress, bytes: moved, windowMs: options.rateWindowMs },
      `blob transfer slower than ${options.minBytesPerSecond} bytes/s (${options.settingNames.minBytesPerSecond}); closing the connection`,
    );
    socket.destroy();
  }, options.rateWindowMs);
  timer.unref();
  // The socket outlives the request on keep-alive connections: its listener goes when the request is done.
  const stop = () => {
    clearInterval(timer);
    socket.off('close', stop);
  };
  socket.once('close', stop);
  res.once('close', stop);
}
