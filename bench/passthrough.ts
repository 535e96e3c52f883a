// bench/passthrough: the native FUSE layer against local disk, in one run.
// Single-row commits (WAL, synchronous NORMAL and FULL) and point reads,
// through a plain passthrough mount and through one that reports WAL
// commit frames to JavaScript (the hook transaction capture will use).
// Prints rates and ratios; the machine is shared, so ratios are what hold.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MountFixture } from '../test/support/fixture.js';
import { commitRate, fmt, pointReadRate, type Rate } from './measure.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-bench-'));

interface Row {
  name: string;
  local: Rate;
  plain: Rate;
  events: Rate;
}

async function main(): Promise<void> {
  const local = path.join(root, 'local');
  fs.mkdirSync(local);
  const mounts: Record<'plain' | 'events', { fx: MountFixture; dir: string }> = {} as never;
  for (const kind of ['plain', 'events'] as const) {
    const mnt = path.join(root, `mnt-${kind}`);
    const data = path.join(root, `data-${kind}`);
    fs.mkdirSync(mnt);
    fs.mkdirSync(data);
    mounts[kind] = { fx: await MountFixture.start(mnt, data, { policy: kind === 'plain' ? 'plain' : 'quiet' }), dir: mnt };
  }
  const rows: Row[] = [];
  try {
    const run = (name: string, f: (dir: string, tag: string) => Rate) => {
      // Interleave local and mount runs so drift in machine load hits both.
      const row: Row = { name, local: f(local, 'a'), plain: f(mounts.plain.dir, 'a'), events: f(mounts.events.dir, 'a') };
      const again = { local: f(local, 'b'), plain: f(mounts.plain.dir, 'b'), events: f(mounts.events.dir, 'b') };
      for (const k of ['local', 'plain', 'events'] as const) if (again[k].perSecond > row[k].perSecond) row[k] = again[k];
      rows.push(row);
      const l = row.local.perSecond;
      console.log(
        `${name.padEnd(34)} local ${fmt(l).padStart(9)}/s | plain mount ${fmt(row.plain.perSecond).padStart(8)}/s (${(row.plain.perSecond / l).toFixed(2)}x)` +
          ` | commit events ${fmt(row.events.perSecond).padStart(8)}/s (${(row.events.perSecond / l).toFixed(2)}x)`,
      );
    };
    console.log(`bench/passthrough: best of 2 runs of ${seconds}s each; ratios are mount / local disk`);
    run('commits WAL synchronous=NORMAL', (dir, t) => commitRate(path.join(dir, `normal-${t}.db`), 'wal', 'normal', seconds));
    run('commits WAL synchronous=FULL', (dir, t) => commitRate(path.join(dir, `full-${t}.db`), 'wal', 'full', seconds));
    run('point reads (10k rows, WAL)', (dir) => pointReadRate(path.join(dir, 'reads.db'), 10_000, seconds));
  } finally {
    for (const m of Object.values(mounts)) await m.fx.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  const goals = [0.15, 0.6, 0.9];
  rows.forEach((r, i) => {
    const ratio = r.events.perSecond / r.local.perSecond;
    console.log(`goal ${r.name}: >= ${goals[i]} -> ${ratio.toFixed(2)} ${ratio >= goals[i]! ? 'met' : 'NOT met'}`);
  });
}

await main();
