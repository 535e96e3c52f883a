export { mount, FuseMount, type FuseEvent, type EventHandler, type FileOptions, type MountOptions } from './mount.js';
export { MountError } from './mountpoint.js';
export { lockRange, MountedFileLock, type LockKind } from './locks.js';
export { FuseError, type ErrnoName } from './errno.js';
