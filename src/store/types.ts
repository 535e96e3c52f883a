// The shapes the DB shares with its callers: its context, its role, a
// position, what a replica receives, and the error a record that does not
// apply raises.
import type { FileControl } from '../fuse/index.js';
import type { Logger } from '../log.js';
import type { WalChecksum } from '../sqlite/wal.js';
import type { TransactionFile } from '../txlog/txfile.js';

export interface DbContext {
  dbDir: string; // the FUSE backing directory
  logRoot: string; // <data.dir>/txlog
  files: FileControl;
  log: Logger;
  compress: boolean;
  strictVerify: boolean;
  /** The -wal and -journal stay in the kernel's page cache (fuse.cache-journals); else they bypass it. */
  cacheJournals?: boolean;
  nodeId: bigint;
  /** Age after which the log starts a new segment (ms). */
  segmentMaxAge: number;
  /** The mount's directory once it serves (a replica writes through it). */
  mountDir?: string;
}

export type Role = 'primary' | 'replica';

/** A replica's record did not apply: the message says why, in one line. */
export class ApplyError extends Error {
  constructor(
    message: string,
    /** The database's files no longer match its position: it needs a snapshot. */
    readonly inDoubt = false,
  ) {
    super(message);
    this.name = 'ApplyError';
  }
}

/** A transaction as a replica receives it: decoded, and the bytes to log as they came. */
export interface ReceivedTransaction {
  tx: TransactionFile;
  bytes: Buffer;
}

/** Where a snapshot leaves a database. */
export interface SnapshotPosition {
  txid: number;
  checksum: bigint;
  pageSize: number;
  commitSize: number;
  timestamp: number;
}

export interface Position {
  txid: number;
  checksum: bigint;
}

/** Where the last recorded transaction ends in the current WAL. */
export interface WalCursor {
  salt1: number;
  salt2: number;
  frameEnd: number; // byte offset just past the last recorded commit frame
  seed: WalChecksum; // the WAL checksum at frameEnd
}
