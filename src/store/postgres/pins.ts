// Pins visible to every process: a row in digest_pins per pin, inserted
// under the `reach` lock (shared), so a collector's guarded sweep step either
// sees the pin or finishes before the pinning request goes on
// (src/gc/collector.ts, rule 2b). A pin of a process that died expires after
// its lease; releasing is not awaited (a late delete only keeps a digest a
// moment longer).
import { DigestPins, type PinStore, type ReleasePin } from '../pins.js';
import { LOCKS, type PgPool } from './db.js';

/** Longer than any pinned span (a blob commit is a rename, a manifest insert one transaction). */
export const PIN_LEASE_MS = 15 * 60 * 1000;

export class PostgresPins implements PinStore {
  private readonly local = new DigestPins();

  constructor(
    private readonly pool: PgPool,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  async pin(digest: string): Promise<ReleasePin> {
    const releaseLocal = await this.local.pin(digest);
    let id: number;
    try {
      const { rows } = await this.pool.query<{ id: number }>(
        `WITH lock AS (SELECT pg_advisory_xact_lock_shared($1, $2))
         INSERT INTO digest_pins (digest, expires_at) SELECT $3, $4 FROM lock RETURNING id`,
        [...LOCKS.reach, digest, Date.now() + PIN_LEASE_MS],
      );
      id = rows[0]!.id;
    } catch (err) {
      releaseLocal();
      throw err;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      releaseLocal();
      this.pool.query('DELETE FROM digest_pins WHERE id = $1', [id]).catch(this.onError);
    };
  }

  has(digest: string): boolean {
    return this.local.has(digest);
  }

  /**
   * In this process only: the collector deletes bytes inside a guarded step,
   * which holds `reach` exclusive until the deletes have returned, so other
   * processes' pins (taken under `reach` shared) wait for them anyway.
   */
  holdForDelete(digest: string): ReleasePin {
    return this.local.holdForDelete(digest);
  }
}
