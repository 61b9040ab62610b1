// Counts blob transfers in flight (downloads, and upload bodies) and says
// when the registry turns busy and when it goes quiet again, so that bakes on
// this host can give way to it (src/jobs/bake-yield.ts). On two cores even a
// bake at SCHED_IDLE slows a client's pull: the vCPUs are not independent,
// and the kernel's writeback of the bake's disk runs at normal priority.
//
// Quiet means no transfer for `quietMs`: the gaps between one client's
// requests (a manifest between two layers) do not end a busy spell.

/** What ends a transfer: the response is done or its connection is gone. */
export interface TransferEnd {
  /** Already over (the client left while the request was being authorized): not counted, as no 'close' would follow. */
  readonly closed: boolean;
  once(event: 'close', listener: () => void): unknown;
}

export const DEFAULT_QUIET_MS = 250;

export class TransferActivity {
  private inFlight = 0;
  private busy = false;
  private quietTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly onChange: (busy: boolean) => void,
    private readonly quietMs = DEFAULT_QUIET_MS,
  ) {}

  get isBusy(): boolean {
    return this.busy;
  }

  /** Counts one transfer until `end` closes. */
  track(end: TransferEnd): void {
    if (end.closed) return;
    this.begin();
    end.once('close', () => this.end());
  }

  private begin(): void {
    this.inFlight++;
    if (this.quietTimer) {
      clearTimeout(this.quietTimer);
      this.quietTimer = null;
    }
    if (!this.busy) {
      this.busy = true;
      this.onChange(true);
    }
  }

  private end(): void {
    if (--this.inFlight > 0) return;
    this.quietTimer = setTimeout(() => {
      this.quietTimer = null;
      this.busy = false;
      this.onChange(false);
    }, this.quietMs);
    this.quietTimer.unref();
  }
}
