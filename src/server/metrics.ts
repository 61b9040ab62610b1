// Prometheus metrics: request counts by route and status, bytes in and out,
// and registry activity. One registry per server so tests can run several.
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LIMIT_SETTINGS, limitValue, type Limits } from './limits.js';

/** Live figures the limits are compared with. */
export interface LimitUsage {
  openConnections(): number;
  uploadSessions(): Promise<number>;
  uploadsInFlight(): number;
}

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

  /** Requests refused or connections cut off by a limit, by the setting that sets it. */
  readonly limitHits = new Counter({
    name: 'kiln_limit_hits_total',
    help: 'Requests refused (429, 408) or connections closed because a limit was reached, by setting',
    labelNames: ['setting'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'kiln_' });
  }

  /** Exports every configured limit (in its README unit) and the usage it bounds. */
  installLimits(limits: Limits, usage: LimitUsage): void {
    const configured = new Gauge({
      name: 'kiln_limit',
      help: 'Configured server limits, by setting (seconds, counts or bytes per second, as in the README)',
      labelNames: ['setting'] as const,
      registers: [this.registry],
    });
    for (const setting of LIMIT_SETTINGS) {
      configured.set({ setting: setting.env }, limitValue(limits, setting));
      this.limitHits.inc({ setting: setting.env }, 0);
    }
    new Gauge({
      name: 'kiln_connections_open',
      help: 'Open client connections',
      registers: [this.registry],
      collect() {
        this.set(usage.openConnections());
      },
    });
    new Gauge({
      name: 'kiln_upload_sessions_open',
      help: 'Upload sessions open (started, not finished, cancelled or expired)',
      registers: [this.registry],
      async collect() {
        this.set(await usage.uploadSessions());
      },
    });
    new Gauge({
      name: 'kiln_uploads_in_flight',
      help: 'Upload bodies being received right now',
      registers: [this.registry],
      collect() {
        this.set(usage.uploadsInFlight());
      },
    });
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
