// Small checks for addresses, URLs and paths used by the section readers.

import { homedir } from 'node:os';
import path from 'node:path';

export interface HostPort {
  host: string;
  port: number;
}

const HOST_PORT = /^(?:\[([0-9A-Za-z:.%_-]+)\]|([^\s:[\]/]*)):(\d{1,5})$/;

/** Parses `[host]:port` (`:20202`, `0.0.0.0:20202`, `[::1]:20202`); undefined if malformed. */
export function parseHostPort(addr: string): HostPort | undefined {
  const m = HOST_PORT.exec(addr);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? '', port };
}

/** True for an absolute http(s) URL with a host. */
export function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** Expands `~` and resolves a relative path against `baseDir`. */
export function resolveDir(p: string, baseDir: string, home: string = homedir()): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return path.join(home, p.slice(2));
  return path.resolve(baseDir, p);
}

/** True when `inner` is `outer` or below it (both absolute and normalized). */
export function isSameOrInside(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}
