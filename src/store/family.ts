// Which names in the mount are databases, and which belong to one.
// Databases live at the mount's root; SQLite's companions carry suffixes.

export const COMPANIONS = ['-wal', '-journal', '-shm'] as const;
export type Companion = (typeof COMPANIONS)[number];

/** Names the daemon serves itself, never files of the data directory. */
export const RESERVED_NAMES = new Set(['.primary', '.lag']);

export type NameKind =
  | { kind: 'database'; db: string }
  | { kind: 'companion'; db: string; companion: Companion }
  | { kind: 'position'; db: string }
  | { kind: 'reserved' }
  | { kind: 'other' };

export function classifyName(name: string): NameKind {
  if (name.includes('/') || name === '' || name.startsWith('.')) {
    return RESERVED_NAMES.has(name) ? { kind: 'reserved' } : { kind: 'other' };
  }
  for (const companion of COMPANIONS) {
    if (name.endsWith(companion) && name.length > companion.length) {
      return { kind: 'companion', db: name.slice(0, -companion.length), companion };
    }
  }
  if (name.endsWith('-pos') && name.length > 4) return { kind: 'position', db: name.slice(0, -4) };
  // SQLite's super-journals (multi-database transactions) and our own temp files
  if (/-mj[0-9A-Fa-f]+$/.test(name) || name.endsWith('.tmp')) return { kind: 'other' };
  return { kind: 'database', db: name };
}
