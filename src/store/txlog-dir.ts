// One database's transaction log on disk: a directory of transaction files
// named by TXID range. Appends are written at once and made durable when
// SQLite makes its own files durable (sync()), as DESIGN.md step 4 says.
import fs from 'node:fs';
import path from 'node:path';
import {
  decodeTransaction,
  decodeTransactionHeader,
  encodeTransaction,
  parseTransactionFileName,
  transactionFileName,
  TxFileError,
  type TransactionFile,
  type TransactionHeader,
} from '../txlog/txfile.js';

export interface LogEntry {
  file: string;
  minTxid: number;
  maxTxid: number;
}

export class TransactionLog {
  private unsynced: number[] = []; // fds of files written since the last sync
  private entries: LogEntry[] = [];

  constructor(
    readonly dir: string,
    private readonly compress: boolean,
  ) {
    fs.mkdirSync(dir, { recursive: true });
  }

  /** Re-reads the directory: the files, in TXID order. */
  scan(): LogEntry[] {
    const entries: LogEntry[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const range = parseTransactionFileName(name);
      if (range) entries.push({ file: path.join(this.dir, name), ...range });
    }
    entries.sort((a, b) => a.minTxid - b.minTxid || a.maxTxid - b.maxTxid);
    this.entries = entries;
    return entries;
  }

  get list(): readonly LogEntry[] {
    return this.entries;
  }

  read(entry: LogEntry): TransactionFile {
    return decodeTransaction(fs.readFileSync(entry.file), entry.file);
  }

  readHeader(entry: LogEntry): TransactionHeader {
    const fd = fs.openSync(entry.file, 'r');
    try {
      const head = Buffer.alloc(512);
      const n = fs.readSync(fd, head, 0, head.length, 0);
      return decodeTransactionHeader(head.subarray(0, n), entry.file);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Writes one transaction file (not yet durable: see sync()). */
  append(tx: TransactionFile): LogEntry {
    const last = this.entries[this.entries.length - 1];
    if (last && tx.minTxid !== last.maxTxid + 1) {
      throw new TxFileError(`transaction ${tx.minTxid} does not follow ${last.maxTxid} in ${this.dir}`);
    }
    const file = path.join(this.dir, transactionFileName(tx.minTxid, tx.maxTxid));
    const fd = fs.openSync(file, 'w');
    try {
      fs.writeSync(fd, encodeTransaction(tx, { compress: this.compress }));
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(file, { force: true });
      throw err;
    }
    this.unsynced.push(fd);
    const entry = { file, minTxid: tx.minTxid, maxTxid: tx.maxTxid };
    this.entries.push(entry);
    return entry;
  }

  get hasUnsynced(): boolean {
    return this.unsynced.length > 0;
  }

  /** Makes every appended file, and the directory entries, durable. */
  sync(): void {
    if (this.unsynced.length === 0) return;
    const fds = this.unsynced;
    this.unsynced = [];
    try {
      for (const fd of fds) fs.fdatasyncSync(fd);
      const dir = fs.openSync(this.dir, 'r');
      try {
        fs.fsyncSync(dir);
      } finally {
        fs.closeSync(dir);
      }
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  }

  /** Closes without syncing (the files stay; a crash-equivalent stop). */
  close(): void {
    for (const fd of this.unsynced) fs.closeSync(fd);
    this.unsynced = [];
  }

  /** Moves files out of the log (corrupt or unchained), keeping them for inspection. */
  quarantine(entries: LogEntry[], reason: string): string {
    const dest = path.join(this.dir, `quarantine-${Date.now()}`);
    fs.mkdirSync(dest, { recursive: true });
    fs.writeFileSync(path.join(dest, 'REASON'), reason + '\n');
    for (const e of entries) fs.renameSync(e.file, path.join(dest, path.basename(e.file)));
    const moved = new Set(entries.map((e) => e.file));
    this.entries = this.entries.filter((e) => !moved.has(e.file));
    return dest;
  }

  /** Deletes files whose transactions are older than `before` (ms), keeping the newest. */
  enforceRetention(before: number): number {
    let removed = 0;
    while (this.entries.length > 1) {
      const first = this.entries[0]!;
      let timestamp: number;
      try {
        timestamp = this.readHeader(first).timestamp;
      } catch {
        break;
      }
      if (timestamp >= before) break;
      fs.rmSync(first.file, { force: true });
      this.entries.shift();
      removed++;
    }
    return removed;
  }
}
