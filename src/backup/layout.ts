// Where a backup keeps things in the bucket (DESIGN.md "S3 layout"):
//
//   <path>/<db>/generations/<gen>/snapshots/<txid>.snapshot.lz4
//   <path>/<db>/generations/<gen>/segments/<minTXID>-<maxTXID>.seg.lz4
//
// TXIDs are 16 lower-case hex digits, as in transaction file names, so keys
// sort in TXID order. A generation id is 16 hex digits too: the creation
// time in ms (12 digits) then 4 random ones, so the newest generation is the
// last one listed. docs/backup.md describes it.
import { randomBytes } from 'node:crypto';

const HEX16 = /^[0-9a-f]{16}$/;
const SNAPSHOT_NAME = /^([0-9a-f]{16})\.snapshot\.lz4$/;
const SEGMENT_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.seg\.lz4$/;

export const hex16 = (n: number): string => n.toString(16).padStart(16, '0');

/** A new generation id: ms since the epoch in 12 hex digits, then 4 random hex digits. */
export function newGenerationId(now = Date.now()): string {
  return now.toString(16).padStart(12, '0').slice(-12) + randomBytes(2).toString('hex');
}

export function isGenerationId(s: string): boolean {
  return HEX16.test(s);
}

/** When a generation was started, from its id. */
export function generationTime(id: string): number {
  return Number.parseInt(id.slice(0, 12), 16);
}

/** Key prefixes of one database's backup under the configured `path`. */
export class BackupLayout {
  constructor(
    /** The configured prefix, without leading or trailing slash ('' = bucket root). */
    readonly root: string,
  ) {}

  private get base(): string {
    return this.root ? `${this.root}/` : '';
  }

  /** `<path>/`: the databases are its sub-prefixes. */
  get databasesPrefix(): string {
    return this.base;
  }

  generationsPrefix(db: string): string {
    return `${this.base}${db}/generations/`;
  }

  generationPrefix(db: string, gen: string): string {
    return `${this.generationsPrefix(db)}${gen}/`;
  }

  snapshotKey(db: string, gen: string, txid: number): string {
    return `${this.generationPrefix(db, gen)}snapshots/${hex16(txid)}.snapshot.lz4`;
  }

  segmentKey(db: string, gen: string, minTxid: number, maxTxid: number): string {
    return `${this.generationPrefix(db, gen)}segments/${hex16(minTxid)}-${hex16(maxTxid)}.seg.lz4`;
  }
}

export interface ParsedObjectName {
  kind: 'snapshot' | 'segment';
  minTxid: number;
  maxTxid: number;
}

/** A key's last component as a snapshot or segment name, or undefined if it is neither. */
export function parseObjectName(key: string): ParsedObjectName | undefined {
  const name = key.slice(key.lastIndexOf('/') + 1);
  const snap = SNAPSHOT_NAME.exec(name);
  if (snap) {
    const txid = Number.parseInt(snap[1]!, 16);
    return Number.isSafeInteger(txid) && txid >= 1 ? { kind: 'snapshot', minTxid: 1, maxTxid: txid } : undefined;
  }
  const seg = SEGMENT_NAME.exec(name);
  if (!seg) return undefined;
  const minTxid = Number.parseInt(seg[1]!, 16);
  const maxTxid = Number.parseInt(seg[2]!, 16);
  if (!Number.isSafeInteger(minTxid) || !Number.isSafeInteger(maxTxid) || minTxid < 1 || maxTxid < minTxid) return undefined;
  return { kind: 'segment', minTxid, maxTxid };
}
