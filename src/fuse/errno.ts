// Errors cross the FUSE boundary as errno names ('EROFS'), never numbers.
import os from 'node:os';

export type ErrnoName = keyof typeof os.constants.errno;

export function errnoNumber(name: string): number {
  const n = (os.constants.errno as Record<string, number>)[name];
  return n ?? os.constants.errno.EIO;
}

/** An error whose `code` is the errno a FUSE operation answers with. */
export class FuseError extends Error {
  constructor(
    readonly code: ErrnoName,
    message: string,
  ) {
    super(message);
  }
}
