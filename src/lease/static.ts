// The static lease: no backend. `candidate: true` names this node the
// primary for good; on other nodes `advertise-url`/`hostname` name it.
import { abortableSleep, LeaseHeldError, type Lease, type Leaser, type PrimaryInfo } from './lease.js';

export class StaticLeaser implements Leaser {
  readonly type = 'static';
  readonly describe = 'static lease';

  /** `primary` is this node's own info on the primary, the primary's on a replica. */
  constructor(
    private readonly isPrimary: boolean,
    private readonly primary: PrimaryInfo,
  ) {}

  private held = false;

  async acquire(): Promise<Lease> {
    if (!this.isPrimary) throw new LeaseHeldError(`the static lease names ${this.primary.hostname} the primary`, this.primary);
    this.held = true;
    return { id: 'static', ttl: Number.POSITIVE_INFINITY, renewedAt: Date.now(), renew: async () => undefined, release: async () => undefined, abandon: () => undefined };
  }

  async acquireExisting(): Promise<Lease> {
    return this.acquire();
  }

  /** On the primary, nobody until it has taken the lease (at start). */
  async primaryInfo(): Promise<PrimaryInfo | undefined> {
    return this.isPrimary && !this.held ? undefined : this.primary;
  }

  /** Nothing ever changes: waits out the timeout (or the abort). */
  waitForChange(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return abortableSleep(timeoutMs, signal);
  }

  /** A static cluster has no shared store: each node keeps its own id. */
  async clusterId(): Promise<string | undefined> {
    return undefined;
  }

  async setClusterId(id: string): Promise<string> {
    return id;
  }

  async close(): Promise<void> {}
}
