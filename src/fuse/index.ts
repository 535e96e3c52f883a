export { mount, fileControl, FuseMount, type FileControl, type FuseEvent, type EventHandler, type FileOptions, type MountOptions } from './mount.js';
export { MountError } from './mountpoint.js';
export { lockRange, MountedFileLock, type LockKind } from './locks.js';
export { FuseError, type ErrnoName } from './errno.js';
