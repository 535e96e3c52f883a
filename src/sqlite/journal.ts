// The rollback journal ("-journal" file) header.
//
// Layout (https://sqlite.org/fileformat.html §3; all integers big-endian):
//   0   magic d9 d5 05 f9 20 a1 63 d7
//   8   nRec: page records that follow this header
//   12  checksum nonce for the page records
//   16  database size in pages before the transaction
//   20  sector size (the header is padded to this many bytes)
//   24  page size
// The journal is "live" (hot, if its writer died) only while the magic is
// present. With synchronous on, SQLite first writes the header with the magic
// and nRec zeroed, and writes both only when it syncs the journal just before
// touching the database file; so a header without the magic means the
// database file was not yet changed. A commit makes the journal dead:
// DELETE unlinks it, TRUNCATE truncates it to 0, PERSIST zeroes the header.

export const JOURNAL_MAGIC = Buffer.from([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);
export const JOURNAL_HEADER_SIZE = 28;
/**
 * nRec value written when the journal is not synced (synchronous=OFF, or a
 * device with safe append): "as many records as the file holds".
 */
export const JOURNAL_NREC_UNKNOWN = 0xffffffff;

export interface JournalHeader {
  /** nRec: page records in this journal segment, or JOURNAL_NREC_UNKNOWN. */
  recordCount: number;
  /** Random nonce mixed into each page record's checksum. */
  checksumNonce: number;
  /** Database size in pages when the transaction began (rollback truncates to it). */
  initialPageCount: number;
  /** Sector size the writer assumed; the header occupies this many bytes. */
  sectorSize: number;
  pageSize: number;
}

/** True if buf starts with the journal magic, i.e. the journal describes a transaction that did not commit. */
export function isLiveJournalHeader(buf: Buffer): boolean {
  return buf.length >= JOURNAL_MAGIC.length && buf.subarray(0, JOURNAL_MAGIC.length).equals(JOURNAL_MAGIC);
}

/**
 * Parse a live journal header; undefined if the magic is absent (a committed,
 * not-yet-synced or empty journal) or the buffer is shorter than the header.
 */
export function parseJournalHeader(buf: Buffer): JournalHeader | undefined {
  if (buf.length < JOURNAL_HEADER_SIZE || !isLiveJournalHeader(buf)) return undefined;
  return {
    recordCount: buf.readUInt32BE(8),
    checksumNonce: buf.readUInt32BE(12),
    initialPageCount: buf.readUInt32BE(16),
    sectorSize: buf.readUInt32BE(20),
    pageSize: buf.readUInt32BE(24),
  };
}

/**
 * Bytes of one page record in the journal: page number (u32), the page, and a
 * u32 checksum. Useful to count records when nRec is JOURNAL_NREC_UNKNOWN.
 */
export function journalRecordSize(pageSize: number): number {
  return 4 + pageSize + 4;
}
