// GET /metrics: Prometheus text, LiteFS's metric names where they exist.
// Values are read when scraped, from the objects that own them, so the
// registry is made at the first scrape (prom-client costs a node's start
// ~80 ms on this project's VM when loaded up front).
import type { Registry } from 'prom-client';
import type { Store } from '../store/store.js';

export interface MetricSources {
  store: Store;
  isPrimary: () => boolean;
  subscriberCount: () => number;
  /** Replication lag in ms (0 on the primary). */
  lagMs: () => number;
  lifecycle: { stats: { promotions: number; demotions: number; handoffs: number; discarded: number } };
  backup?: () => { db: string; txid: number; pending: number }[];
}

type PromClient = typeof import('prom-client');

/** A counter whose value lives elsewhere: set from `read` at each scrape. */
function mirroredCounter({ Counter }: PromClient, registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name, help, registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

export async function createMetrics(src: MetricSources): Promise<Registry> {
  const prom = await import('prom-client');
  const { Gauge } = prom;
  const registry = new prom.Registry();
  new Gauge({ name: 'litefs_is_primary', help: '1 on the primary, 0 on a replica', registers: [registry], collect() { this.set(src.isPrimary() ? 1 : 0); } });
  new Gauge({ name: 'litefs_subscriber_count', help: 'Replicas streaming from this node', registers: [registry], collect() { this.set(src.subscriberCount()); } });
  new Gauge({ name: 'litefs_lag_seconds', help: 'Replication lag behind the primary', registers: [registry], collect() { this.set(src.lagMs() / 1000); } });
  new Gauge({
    name: 'litefs_db_txid', help: 'Position (TXID) of each database', labelNames: ['db'], registers: [registry],
    collect() {
      this.reset();
      for (const db of src.store.dbs.values()) this.set({ db: db.name }, db.position.txid);
    },
  });
  const s = src.lifecycle.stats;
  mirroredCounter(prom, registry, 'litefs_promotions_total', 'Times this node became primary', () => s.promotions);
  mirroredCounter(prom, registry, 'litefs_demotions_total', 'Times this node lost the lease while primary', () => s.demotions);
  mirroredCounter(prom, registry, 'litefs_handoffs_total', 'Times this node handed its lease to a replica', () => s.handoffs);
  mirroredCounter(prom, registry, 'litefs_discarded_transactions_total', 'Transactions this node committed as primary that never reached the next primary, discarded when it rejoined', () => s.discarded);
  if (src.backup) {
    const backup = src.backup;
    new Gauge({
      name: 'litefs_backup_txid', help: 'Last TXID of each database uploaded to the backup', labelNames: ['db'], registers: [registry],
      collect() {
        this.reset();
        for (const b of backup()) this.set({ db: b.db }, b.txid);
      },
    });
    new Gauge({
      name: 'litefs_backup_pending_transactions', help: 'Transactions committed and not yet uploaded to the backup', labelNames: ['db'], registers: [registry],
      collect() {
        this.reset();
        for (const b of backup()) this.set({ db: b.db }, b.pending);
      },
    });
  }
  return registry;
}
