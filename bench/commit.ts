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
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
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
  console.log(`bench/commit: single-row commits, best of ${RUNS} runs of ${seconds}s, local and mount runs interleaved; ratio = litefs mount / local disk`);
  for (const c of cases) {
    // Interleaved, so drift in the machine's load (fsync times vary 2x here) hits both sides.
    let l: Rate | undefined;
    let m: Rate | undefined;
    for (let run = 0; run < RUNS; run++) {
      const a = commitRate(path.join(local, `${c.mode}-${c.sync}-${run}.db`), c.mode, c.sync, seconds);
      const file = path.join(mnt, `${c.mode}-${c.sync}-${run}.db`);
      const b = commitRate(file, c.mode, c.sync, seconds);
      // Every commit is one TXID (plus CREATE TABLE, and the switch to WAL).
      const txid = parseInt(fs.readFileSync(`${file}-pos`, 'utf8').slice(0, 16), 16);
      const setup = c.mode === 'wal' ? 2 : 1;
      if (txid !== b.ops + setup) throw new Error(`${file}: ${b.ops} commits, but the position is TXID ${txid} (expected ${b.ops + setup})`);
      if (!l || a.perSecond > l.perSecond) l = a;
      if (!m || b.perSecond > m.perSecond) m = b;
    }
    if (!l || !m) throw new Error('BENCH_RUNS must be at least 1');
    const ratio = m.perSecond / l.perSecond;
    const goal = c.goal === undefined ? '' : ` (goal >= ${c.goal}: ${ratio >= c.goal ? 'met' : 'NOT met'})`;
    console.log(`${c.name.padEnd(26)} local ${fmt(l.perSecond).padStart(8)} tx/s | litefs ${fmt(m.perSecond).padStart(8)} tx/s | ratio ${ratio.toFixed(2)}${goal}`);
  }
  console.log('every commit through the mount was recorded as one TXID (checked against <db>-pos)');
} finally {
  await node.stop();
  fs.rmSync(root, { recursive: true, force: true });
}
