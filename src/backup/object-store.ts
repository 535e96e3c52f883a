// The bucket, as the backup sees it: five operations on keys. S3 (s3.ts) is
// the real one; DirectoryObjectStore (directory.ts) is the reference
// implementation for unit tests and for a backup on a mounted volume.

export interface StoredObject {
  key: string;
  size: number;
  /** When it was written (ms since the epoch). */
  lastModified: number;
}

export interface ObjectStore {
  /** Where it is, for messages: `s3://bucket` or a directory. */
  readonly label: string;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string): Promise<StoredObject[]>;
  /** The sub-prefixes of `prefix` up to the next '/', each ending in '/'. */
  listPrefixes(prefix: string): Promise<string[]>;
  /** The object, or with `range` only bytes start..end-1 of it. */
  get(key: string, range?: { start: number; end: number }): Promise<Buffer>;
  /** The object's bytes as they arrive (a large snapshot is decoded while it downloads). */
  getStream(key: string): Promise<AsyncIterable<Buffer>>;
  /** Atomic: the object exists whole or not at all. `signal` abandons the upload. */
  put(key: string, body: Buffer, signal?: AbortSignal): Promise<void>;
  delete(keys: string[]): Promise<void>;
}

/**
 * A store operation failed. The message is one line naming the object (or
 * prefix) and the cause. `permanent` failures (no such bucket, bad
 * credentials, access denied) do not heal by retrying; the uploader still
 * retries them, slowly, because someone may fix the bucket.
 */
export class ObjectStoreError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly permanent: boolean,
    readonly notFound = false,
  ) {
    super(message);
    this.name = 'ObjectStoreError';
  }
}
