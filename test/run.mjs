// Runs the compiled test files with node's test runner, one file at a time
// (integration tests mount FUSE and start processes; two cores).
//
// Each file runs in its own process group under a watchdog: a file that
// hangs (a test waiting on a process that will never answer) is killed with
// everything it started, its leftover mounts are detached, and the run goes
// on and fails, instead of holding CI until its own time limit.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const FILE_TIMEOUT_MS = Number(process.env.LITEFS_TEST_FILE_TIMEOUT_MS ?? 10 * 60_000);

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'dist', 'test');
const files = [];
for (const dir of ['unit', 'integration']) {
  const d = path.join(root, dir);
  if (!fs.existsSync(d)) continue;
  for (const f of fs.readdirSync(d).sort()) if (f.endsWith('.test.js')) files.push(path.join(d, f));
}
const filter = process.argv.slice(2);
const chosen = filter.length ? files.filter((f) => filter.some((x) => f.includes(x))) : files;

/**
 * FUSE mounts under the temp directory whose server was killed with a hung
 * test file: each connection is aborted first (a server stuck in a request
 * to its own mount is in uninterruptible sleep, and SIGKILL alone leaves it
 * there), then the mount is detached.
 */
function detachLeftoverMounts() {
  const tmp = os.tmpdir();
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    const [device, dir] = [fields[2], fields[4]];
    const type = fields[fields.indexOf('-') + 1];
    if (type !== 'fuse.litefs' || !dir?.startsWith(tmp + '/')) continue;
    try {
      fs.writeFileSync(`/sys/fs/fuse/connections/${device.split(':')[1]}/abort`, '1');
    } catch {}
    spawnSync('fusermount3', ['-u', '-z', dir]);
  }
}

function runFile(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', file], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    let tail = '';
    child.stdout.on('data', (d) => {
      process.stdout.write(d);
      tail = (tail + d.toString()).slice(-4096);
    });
    const watchdog = setTimeout(() => {
      process.stderr.write(`# ${path.basename(file)} did not finish within ${FILE_TIMEOUT_MS / 1000} s: killed with its processes\n`);
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, FILE_TIMEOUT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(watchdog);
      if (signal) {
        try {
          process.kill(-child.pid, 'SIGKILL'); // whatever the file started and left
        } catch {}
        detachLeftoverMounts();
      }
      for (const key of Object.keys(totals)) totals[key] += Number(new RegExp(`^# ${key} (\\d+)$`, 'm').exec(tail)?.[1] ?? 0);
      resolve(code === 0 ? 0 : 1);
    });
  });
}

const totals = { pass: 0, fail: 0, cancelled: 0 };
const started = Date.now();
const failed = [];
for (const file of chosen) if ((await runFile(file)) !== 0) failed.push(path.basename(file));
process.stdout.write(`# all files: pass ${totals.pass}, fail ${totals.fail}, cancelled ${totals.cancelled}\n`);
process.stdout.write(`# ${chosen.length} files in ${Math.round((Date.now() - started) / 1000)} s; failed: ${failed.length ? failed.join(', ') : 'none'}\n`);
process.exit(failed.length ? 1 : 0);
