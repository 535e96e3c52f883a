// DatabaseWriter.writeStaged (src/store/apply.ts) on a full disk: a batch
// that grows the database file and also rewrites pages in place must leave
// the file as it was when the growth cannot be written, never with some
// pages new and others missing. Run on a small tmpfs, on the file itself
// (the locks are the same open-file-description locks as through a mount).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DatabaseWriter } from '../../src/store/apply.js';
import { fileControl, type FileControl } from '../../src/fuse/index.js';
import { createLogger } from '../../src/log.js';

const PAGE = 4096;

test('a batch that cannot grow the file on a full disk leaves every page as it was; with room it is written whole', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-writer-full-'));
  assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', dir]).status, 0);
  try {
    const file = path.join(dir, 'f.db');
    const sqlite = new Database(file);
    sqlite.pragma(`page_size=${PAGE}`);
    sqlite.exec('CREATE TABLE t(v BLOB)');
    for (let i = 0; i < 15; i++) sqlite.prepare('INSERT INTO t VALUES (randomblob(3000))').run();
    sqlite.close();
    const before = fs.readFileSync(file);
    const pageCount = before.length / PAGE;

    // Fill the file system: rewriting pages in place still works, growing the file does not.
    const filler = path.join(dir, 'filler');
    const fd = fs.openSync(filler, 'w');
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(64 * 1024));
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(512));
    } catch {}
    fs.closeSync(fd);

    const files: FileControl = { ...fileControl, storePages: () => undefined }; // no mount here
    const writer = new DatabaseWriter('f.db', file, file, createLogger({ format: 'text', timestamp: true, debug: false }, fs.createWriteStream('/dev/null')), files);
    const batch = () => {
      writer.stage([{ pgno: 1, data: before.subarray(0, PAGE) }, { pgno: 2, data: Buffer.alloc(PAGE, 0xaa) }], PAGE, pageCount);
      const grown = Array.from({ length: 8 }, (_, i) => ({ pgno: pageCount + 1 + i, data: Buffer.alloc(PAGE, 0xbb) }));
      writer.stage(grown, PAGE, pageCount + 8);
      writer.writeStaged();
    };
    try {
      await assert.rejects(writer.exclusive(false, batch), /ENOSPC/);
      assert.ok(fs.readFileSync(file).equals(before), 'the file is as it was: no page rewritten in place, no partial growth');

      fs.rmSync(filler);
      await writer.exclusive(false, batch);
      const after = fs.readFileSync(file);
      assert.equal(after.length, (pageCount + 8) * PAGE);
      assert.ok(after.subarray(PAGE, 2 * PAGE).equals(Buffer.alloc(PAGE, 0xaa)), 'the page rewritten in place');
      assert.ok(after.subarray(pageCount * PAGE).equals(Buffer.alloc(8 * PAGE, 0xbb)), 'the pages that grew the file');
    } finally {
      await writer.close();
    }
  } finally {
    spawnSync('umount', [dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
