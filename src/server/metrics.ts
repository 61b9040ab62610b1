// Prometheus metrics: request counts by route and status, bytes in and out,
// and registry activity. One registry per server so tests can run several.
import type { FastifyInstance } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'kiln_http_requests_total',
    help: 'HTTP requests by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'kiln_http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly bytesIn = new Counter({ name: 'kiln_http_bytes_received_total', help: 'Request body bytes received', registers: [this.registry] });
  readonly bytesOut = new Counter({ name: 'kiln_http_bytes_sent_total', help: 'Response body bytes sent', registers: [this.registry] });
  readonly blobUploads = new Counter({ name: 'kiln_blob_uploads_total', help: 'Blob uploads completed', registers: [this.registry] });
  readonly manifestPushes = new Counter({
    name: 'kiln_manifest_pushes_total',
    help: 'Manifests pushed, by media type',
    labelNames: ['media_type'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'kiln_' });
  }

  /** Counts every request once it is answered. */
  install(app: FastifyInstance): void {
    app.addHook('onResponse', async (req, reply) => {
      const route = req.kilnRoute || req.routeOptions.url || 'unmatched';
      this.requests.inc({ route, method: req.method, status: String(reply.statusCode) });
      this.duration.observe({ route }, reply.elapsedTime / 1000);
      const received = Number(req.headers['content-length'] ?? 0);
      if (received > 0) this.bytesIn.inc(received);
      const sent = Number(reply.getHeader('content-length') ?? 0);
      if (sent > 0 && req.method !== 'HEAD') this.bytesOut.inc(sent);
      if (reply.statusCode === 201 && route.startsWith('upload')) this.blobUploads.inc();
    });
    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', this.registry.contentType);
      return this.registry.metrics();
    });
  }
}
