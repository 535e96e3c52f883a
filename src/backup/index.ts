// The backup as a node uses it: the bucket from the config, the uploader a
// primary runs, and the restore a node with an empty disk does at startup.
import fs from 'node:fs';
import path from 'node:path';
import type { BackupConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import { classifyName } from '../store/family.js';
import { databaseFileInfo } from '../store/pages.js';
import { TransactionLog } from '../store/txlog-dir.js';
import { listBackedUpDatabases } from './catalog.js';
import { BackupLayout } from './layout.js';
import { restoreDatabase } from './restore.js';
import type { ObjectStore } from './object-store.js';

export { BackupUploader, type DbBackupStatus } from './uploader.js';
export { BackupLayout } from './layout.js';
export { RestoreError } from './restore.js';
export type { ObjectStore } from './object-store.js';

/** The AWS SDK is loaded only here, when a backup is configured: a node starts sooner without it. */
export async function openBackup(config: BackupConfig): Promise<{ objects: ObjectStore; layout: BackupLayout; config: BackupConfig }> {
  const { S3ObjectStore } = await import('./s3.js');
  return { objects: new S3ObjectStore(config), layout: new BackupLayout(config.path), config };
}

/** Does the data directory hold no database at all? */
export function hasNoDatabases(dbDir: string): boolean {
  if (!fs.existsSync(dbDir)) return true;
  return !fs.readdirSync(dbDir).some((name) => classifyName(name).kind === 'database');
}

/**
 * A node starting with no databases restores each one the bucket holds, to
 * its latest transaction, so a candidate comes up with the data (and a
 * replica then only catches up from the primary's stream). The log starts
 * at the restored position, as after a replica's snapshot.
 */
export async function restoreDataDir(opts: { objects: ObjectStore; layout: BackupLayout; dbDir: string; logRoot: string; compress: boolean; log: Logger }): Promise<number> {
  const { objects, layout, log } = opts;
  const names = await listBackedUpDatabases(objects, layout);
  for (const db of names) {
    const output = path.join(opts.dbDir, db);
    const result = await restoreDatabase({ store: objects, layout, db, output, target: { latest: true } });
    // A WAL-mode database is read with its -wal: on a replica no reader may create one, so an empty one is put beside it.
    const head = databaseFileInfo(output)?.head;
    if (head && head[18] === 2 && head[19] === 2) fs.writeFileSync(output + '-wal', '');
    new TransactionLog(path.join(opts.logRoot, db), opts.compress).reset({
      txid: result.txid, checksum: result.checksum, pageSize: result.pageSize, commitSize: result.commitSize, timestamp: result.timestamp,
    });
    log.info({ db, generation: result.generation, txid: result.txid, bytes: result.bytes, ms: result.ms }, 'restored from the backup');
  }
  return names.length;
}
