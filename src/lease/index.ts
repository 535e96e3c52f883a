// Picks the Leaser for a config's lease.type.
import type { LeaseConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Leaser, PrimaryInfo } from './lease.js';
import { StaticLeaser } from './static.js';

export * from './lease.js';
export { NodeLifecycle, LifecycleError, ClusterMismatchError } from './lifecycle.js';
export { ClusterIdFile } from './cluster-id.js';

/**
 * `self` is this node as a primary: its hostname and advertise URL. The
 * backend's client library is loaded only when it is the one configured: a
 * node starts sooner without the others.
 */
export async function createLeaser(lease: LeaseConfig, self: PrimaryInfo, log: Logger): Promise<Leaser> {
  switch (lease.type) {
    case 'static':
      // A static replica's hostname/advertise-url name the primary (config/lease.ts).
      return new StaticLeaser(lease.candidate, lease.candidate ? self : { hostname: lease.hostname, advertiseUrl: lease.advertiseUrl });
    case 'consul': {
      const { ConsulLeaser } = await import('./consul.js');
      const c = lease.consul!;
      return new ConsulLeaser({ url: c.url, key: c.key, ttl: c.ttl, lockDelay: c.lockDelay, hostname: self.hostname, advertiseUrl: self.advertiseUrl, log });
    }
    case 'etcd': {
      const { EtcdLeaser } = await import('./etcd.js');
      const e = lease.etcd!;
      return new EtcdLeaser({ endpoints: e.endpoints, key: e.key, ttl: e.ttl, lockDelay: e.lockDelay, hostname: self.hostname, advertiseUrl: self.advertiseUrl, log });
    }
  }
}
