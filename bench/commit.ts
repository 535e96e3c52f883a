// bench/commit: single-row commits through a single-node primary's mount
// (`litefs mount`, transaction capture on) against local disk, in one run.
// WAL with synchronous NORMAL and FULL, and DELETE mode. Ratios hold on this
// shared machine better than absolute numbers.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MountProcess, writeConfig } from '../test/support/cli.js';
import { commitRate, fmt, type Rate } from './measure.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-bench-'));
const local = path.join(root, 'local');
const mnt = path.join(root, 'mnt');
const data = path.join(root, 'data');
for (const d of [local, mnt, data]) fs.mkdirSync(d);

const cases = [
  { name: 'WAL synchronous=NORMAL', mode: 'wal', sync: 'normal', goal: 0.12 },
  { name: 'WAL synchronous=FULL', mode: 'wal', sync: 'full', goal: 0.5 },
  { name: 'DELETE synchronous=FULL', mode: 'delete', sync: 'full', goal: undefined },
];

const node = await MountProcess.start(writeConfig(root, { mnt, data }), mnt);
try {
  console.log(`bench/commit: single-row commits, best of 2 runs of ${seconds}s; ratio = litefs mount / local disk`);
  for (const c of cases) {
    const best = (dir: string): Rate => {
      const a = commitRate(path.join(dir, `${c.mode}-${c.sync}-a.db`), c.mode, c.sync, seconds);
      const b = commitRate(path.join(dir, `${c.mode}-${c.sync}-b.db`), c.mode, c.sync, seconds);
      return a.perSecond > b.perSecond ? a : b;
    };
    const l = best(local);
    const m = best(mnt);
    const ratio = m.perSecond / l.perSecond;
    const goal = c.goal === undefined ? '' : ` (goal >= ${c.goal}: ${ratio >= c.goal ? 'met' : 'NOT met'})`;
    console.log(`${c.name.padEnd(26)} local ${fmt(l.perSecond).padStart(8)} tx/s | litefs ${fmt(m.perSecond).padStart(8)} tx/s | ratio ${ratio.toFixed(2)}${goal}`);
  }
  const txfiles = fs.readdirSync(path.join(data, 'txlog')).reduce((n, db) => n + fs.readdirSync(path.join(data, 'txlog', db)).length, 0);
  console.log(`transaction files written: ${fmt(txfiles)}`);
} finally {
  await node.stop();
  fs.rmSync(root, { recursive: true, force: true });
}
