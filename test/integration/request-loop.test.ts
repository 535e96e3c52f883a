// The native request loop lets one thread at a time read /dev/fuse, the one
// that answered the last request (docs/fuse.md, "The request loop"). These
// tests show that one request held up does not hold up other clients:
// while it waits for JavaScript's answer, and while it waits on a slow
// backing disk (the watcher lets another thread read).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { MountFixture } from '../support/fixture.js';
import { sleep, tempDirs } from '../support/clients.js';

/** A client process that writes one byte to file and fsyncs it: it sits in fsync while the answer is held. */
function fsyncClient(file: string): { started: Promise<void>; exited: Promise<number | null>; hasExited: () => boolean } {
  const script = `const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'r+');
fs.writeSync(fd, 'x', 0); console.log('fsyncing'); fs.fsyncSync(fd); fs.closeSync(fd);`;
  const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let exited = false;
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => { exited = true; resolve(code); }));
  const started = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('fsyncing')) resolve(); });
    child.on('exit', (code) => reject(new Error(`fsync client exited early (${code})`)));
  });
  return { started, exited: exit, hasExited: () => exited };
}

/** Another client: rounds of write and read-back on its own file, without any question to JavaScript. */
async function otherClient(file: string, rounds: number): Promise<void> {
  const fh = await fs.promises.open(file, 'r+');
  try {
    for (let i = 0; i < rounds; i++) {
      const text = `round ${String(i).padStart(4, '0')}`;
      await fh.write(text, 0);
      const back = Buffer.alloc(text.length);
      await fh.read(back, 0, back.length, 0);
      assert.equal(back.toString(), text);
      await fh.stat();
    }
  } finally {
    await fh.close();
  }
}

const HOLD_MS = 3000;

describe('request loop', () => {
  test('while JavaScript holds its answer to one request, other clients are served', async () => {
    const dirs = tempDirs();
    const fx = await MountFixture.start(dirs.mnt, dirs.data);
    try {
      // Created before answers slow down: a create is a question too.
      fs.writeFileSync(path.join(dirs.mnt, 'slow.db'), 'slow');
      fs.writeFileSync(path.join(dirs.mnt, 'other.db'), 'other');
      await fx.call({ cmd: 'slowAnswers', type: 'fsync', ms: HOLD_MS });
      const slow = fsyncClient(path.join(dirs.mnt, 'slow.db'));
      await slow.started;
      await sleep(200); // into the kernel's fsync
      await otherClient(path.join(dirs.mnt, 'other.db'), 50);
      assert.equal(slow.hasExited(), false, 'the other client finished only after the held fsync');
      assert.equal(await slow.exited, 0);
    } finally {
      await fx.stop();
      dirs.cleanup();
    }
  });

  test('while one request waits on a slow backing disk, the watcher lets other clients be served', async () => {
    // The slow disk: mount A's data directory lies on mount B, whose
    // JavaScript holds its answer to each fsync. A asks its own JavaScript
    // nothing about fsync ('plain'), so A's reader itself sits in fsync.
    const b = tempDirs();
    const a = tempDirs();
    fs.mkdirSync(path.join(b.data, 'a-data'));
    const fxB = await MountFixture.start(b.mnt, b.data);
    let fxA: MountFixture | undefined;
    try {
      fxA = await MountFixture.start(a.mnt, path.join(b.mnt, 'a-data'), { policy: 'plain' });
      fs.writeFileSync(path.join(a.mnt, 'slow.db'), 'slow');
      fs.writeFileSync(path.join(a.mnt, 'other.db'), 'other');
      await fxB.call({ cmd: 'slowAnswers', type: 'fsync', ms: HOLD_MS });
      const slow = fsyncClient(path.join(a.mnt, 'slow.db'));
      await slow.started;
      await sleep(200);
      await otherClient(path.join(a.mnt, 'other.db'), 50);
      assert.equal(slow.hasExited(), false, 'the other client finished only after the slow fsync');
      assert.equal(await slow.exited, 0);
    } finally {
      await fxA?.stop();
      await fxB.stop();
      a.cleanup();
      b.cleanup();
    }
  });
});
