// The 100-byte header at the start of every SQLite database file, and the
// lock-byte facts of the database file itself.
//
// All multi-byte header fields are big-endian (https://sqlite.org/fileformat.html §1.3).

/** Size of the database header, always at offset 0 of page 1. */
export const DB_HEADER_SIZE = 100;

/** "SQLite format 3" followed by a NUL: the first 16 bytes of every database. */
export const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** Header bytes 18/19 hold 1 for rollback-journal databases and 2 for WAL. */
export const FILE_FORMAT_LEGACY = 1;
export const FILE_FORMAT_WAL = 2;

// POSIX lock bytes on the database file (os_unix.c). SQLite locks these byte
// ranges, never reads or writes them; the page that contains them is the
// "lock page", which holds no data and is never replicated.
export const PENDING_BYTE = 0x40000000;
export const RESERVED_BYTE = PENDING_BYTE + 1;
export const SHARED_FIRST = PENDING_BYTE + 2;
export const SHARED_SIZE = 510;

export interface DbHeader {
  /** Page size in bytes (the stored value 1 already decoded as 65536). */
  pageSize: number;
  /** Byte 18: 1 = legacy (rollback journal), 2 = WAL. */
  writeVersion: number;
  /** Byte 19: 1 = legacy (rollback journal), 2 = WAL. */
  readVersion: number;
  /** Byte 20: bytes of reserved space at the end of each page. */
  reservedSpace: number;
  /** Offset 24: incremented on each rollback-mode commit. */
  fileChangeCounter: number;
  /** Offset 28: database size in pages ("in-header database size"). */
  pageCount: number;
  /** Offset 92: the change counter value for which pageCount is valid. */
  versionValidFor: number;
  /** Offset 96: SQLITE_VERSION_NUMBER of the library that last wrote the file. */
  sqliteVersion: number;
  /**
   * Whether pageCount can be trusted. SQLite only trusts it when it is nonzero
   * and versionValidFor equals fileChangeCounter (an old library may have
   * changed the file without updating it); otherwise size comes from the file length.
   */
  pageCountValid: boolean;
}

/** True if buf starts with the SQLite magic string. */
export function isSqliteHeader(buf: Buffer): boolean {
  return buf.length >= SQLITE_MAGIC.length && buf.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC);
}

/** Decode the 16-bit on-disk page size field (1 stands for 65536, which does not fit in 16 bits). */
export function decodePageSize(raw: number): number {
  return raw === 1 ? 65536 : raw;
}

/** True for the page sizes SQLite accepts: powers of two from 512 to 65536. */
export function isValidPageSize(pageSize: number): boolean {
  return Number.isInteger(pageSize) && pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0;
}

/**
 * Parse the database header. Throws if buf is shorter than 100 bytes, lacks
 * the magic string, or has an impossible page size: callers should never act
 * on such a file as if it were a database.
 */
export function parseDbHeader(buf: Buffer): DbHeader {
  if (buf.length < DB_HEADER_SIZE) {
    throw new RangeError(`database header needs ${DB_HEADER_SIZE} bytes, got ${buf.length}`);
  }
  if (!isSqliteHeader(buf)) {
    throw new Error('not an SQLite database: magic string "SQLite format 3" missing');
  }
  const pageSize = decodePageSize(buf.readUInt16BE(16));
  if (!isValidPageSize(pageSize)) {
    throw new Error(`invalid SQLite page size ${pageSize}`);
  }
  const fileChangeCounter = buf.readUInt32BE(24);
  const pageCount = buf.readUInt32BE(28);
  const versionValidFor = buf.readUInt32BE(92);
  return {
    pageSize,
    writeVersion: buf.readUInt8(18),
    readVersion: buf.readUInt8(19),
    reservedSpace: buf.readUInt8(20),
    fileChangeCounter,
    pageCount,
    versionValidFor,
    sqliteVersion: buf.readUInt32BE(96),
    pageCountValid: pageCount > 0 && versionValidFor === fileChangeCounter,
  };
}

/** True if the header says the database is in WAL mode (bytes 18 and 19 both 2). */
export function isWalModeHeader(header: DbHeader): boolean {
  return header.writeVersion === FILE_FORMAT_WAL && header.readVersion === FILE_FORMAT_WAL;
}

/**
 * The 1-based number of the page that contains PENDING_BYTE. It exists only
 * in databases larger than 1 GiB, and is skipped by checksums and replication.
 */
export function lockPageNumber(pageSize: number): number {
  return Math.floor(PENDING_BYTE / pageSize) + 1;
}

/** The pages a database of `commitSize` pages holds: all but the lock page (what a transaction changing the page size must carry). */
export function pagesOfWholeDatabase(pageSize: number, commitSize: number): number {
  return commitSize - (lockPageNumber(pageSize) <= commitSize ? 1 : 0);
}
