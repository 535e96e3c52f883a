// Checks on the mount directory before mounting: clear one-line errors for
// bad input, and clearing of a dead mount left by a killed process.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

export class MountError extends Error {}

/** Mount points of this mount namespace (field 5 of /proc/self/mountinfo). */
export function mountPoints(): Map<string, string> {
  const byPoint = new Map<string, string>();
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(' ');
    const fsType = line.slice(sep + 3).split(' ')[0] ?? '';
    const point = (fields[4] ?? '').replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    byPoint.set(point, fsType);
  }
  return byPoint;
}

function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Unmounts a FUSE mount whose server died ("Transport endpoint is not connected"). */
function clearDeadMount(dir: string): void {
  try {
    execFileSync('fusermount3', ['-u', '-z', dir], { stdio: 'pipe' });
  } catch (err) {
    throw new MountError(`cannot clear the dead mount at ${dir}: ${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}`);
  }
}

/**
 * Validates the pair of directories and returns their absolute forms.
 * Reports whether a dead mount was cleared, for the log.
 */
export function prepareMountPoint(mountDir: string, dataDir: string): { mountDir: string; dataDir: string; clearedDeadMount: boolean } {
  const dir = path.resolve(mountDir);
  if (!fs.existsSync('/dev/fuse')) {
    throw new MountError(`cannot mount ${dir}: /dev/fuse is missing (load the fuse kernel module, or give the container --device /dev/fuse)`);
  }
  let clearedDeadMount = false;
  try {
    const st = fs.statSync(dir);
    if (!st.isDirectory()) throw new MountError(`cannot mount ${dir}: not a directory`);
    // stat may answer from the kernel's attribute cache for a second after
    // the daemon died; statfs always asks the daemon.
    if (mountPoints().has(dir)) fs.statfsSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') {
      clearDeadMount(dir);
      clearedDeadMount = true;
    } else if (code === 'ENOENT') {
      throw new MountError(`cannot mount ${dir}: the mount directory does not exist (create it first)`);
    } else if (err instanceof MountError) {
      throw err;
    } else {
      throw new MountError(`cannot mount ${dir}: ${(err as Error).message}`);
    }
  }
  const fsType = mountPoints().get(dir);
  if (fsType !== undefined) {
    throw new MountError(`cannot mount ${dir}: it is already a mount point (${fsType}); is another litefs running there?`);
  }
  const data = path.resolve(dataDir);
  if (isInside(data, dir)) {
    throw new MountError(`data directory ${data} must not be the mount directory ${dir} or inside it`);
  }
  if (!fs.existsSync(data)) {
    throw new MountError(`data directory ${data} does not exist`);
  }
  return { mountDir: dir, dataDir: fs.realpathSync(data), clearedDeadMount };
}
