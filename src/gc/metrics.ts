// Prometheus metrics of the collector, registered on the server's registry.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type GcItemKind = 'tag' | 'manifest' | 'repo_link' | 'blob' | 'repo' | 'disk' | 'upload';
export type GcBytesKind = 'blob' | 'disk' | 'upload';

export class GcMetrics {
  readonly runs: Counter<'mode' | 'trigger' | 'result'>;
  readonly items: Counter<'kind' | 'mode'>;
  readonly bytes: Counter<'kind' | 'mode'>;
  readonly duration: Histogram<'mode'>;
  readonly lastRun: Gauge<'mode'>;
  readonly lastBytes: Gauge<'mode'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.runs = new Counter({
      name: 'kiln_gc_runs_total',
      help: 'Garbage collection runs by mode (sweep or dry_run), trigger (interval, api, cli) and result',
      labelNames: ['mode', 'trigger', 'result'] as const,
      registers,
    });
    this.items = new Counter({
      name: 'kiln_gc_items_deleted_total',
      help: 'Items deleted (mode=sweep) or found deletable (mode=dry_run) by kind',
      labelNames: ['kind', 'mode'] as const,
      registers,
    });
    this.bytes = new Counter({
      name: 'kiln_gc_bytes_freed_total',
      help: 'Bytes freed (mode=sweep) or freeable (mode=dry_run) by kind',
      labelNames: ['kind', 'mode'] as const,
      registers,
    });
    this.duration = new Histogram({
      name: 'kiln_gc_duration_seconds',
      help: 'Duration of garbage collection runs',
      labelNames: ['mode'] as const,
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers,
    });
    this.lastRun = new Gauge({
      name: 'kiln_gc_last_run_timestamp_seconds',
      help: 'When the last successful run finished',
      labelNames: ['mode'] as const,
      registers,
    });
    this.lastBytes = new Gauge({
      name: 'kiln_gc_last_run_bytes',
      help: 'Bytes freed (or freeable, for dry runs) by the last successful run',
      labelNames: ['mode'] as const,
      registers,
    });
  }
}
