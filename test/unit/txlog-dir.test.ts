// The on-disk transaction log: appends inside batch() reach the segment in
// one write at the batch's end, and a failed write leaves no part of the
// batch behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHECKSUM_FLAG, PageChecksums } from '../../src/txlog/checksum.js';
import type { TransactionFile } from '../../src/txlog/txfile.js';
import { TransactionLog } from '../../src/store/txlog-dir.js';

const PAGE = 4096;

/** A chain of one-page transactions on a one-page database. */
function chain(count: number): TransactionFile[] {
  const sums = new PageChecksums(PAGE);
  let before = 0n;
  const out: TransactionFile[] = [];
  for (let txid = 1; txid <= count; txid++) {
    const data = Buffer.alloc(PAGE, txid);
    sums.set(1, data);
    out.push({
      pageSize: PAGE, commitSize: 1, minTxid: txid, maxTxid: txid, timestamp: 1_700_000_000_000 + txid,
      preApplyChecksum: txid === 1 ? 0n : before | CHECKSUM_FLAG, postApplyChecksum: sums.checksum, nodeId: 7n,
      walSalt1: 0, walSalt2: 0, walFrameEnd: 0, pages: [{ pgno: 1, data }],
    });
    before = sums.checksum;
  }
  return out;
}

function withLog(fn: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-txlog-'));
  try {
    fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function scanTxids(dir: string): number[] {
  const log = new TransactionLog(dir, true);
  const txids: number[] = [];
  const { damaged } = log.scan((tx) => void txids.push(tx.maxTxid));
  assert.equal(damaged, undefined);
  return txids;
}

test('appends in a batch are one write, at the end of the batch, and read back in order', () => {
  withLog((dir) => {
    const txs = chain(6);
    const log = new TransactionLog(dir, true);
    log.append(txs[0]!);
    const writes: number[] = [];
    const writev = fs.writevSync;
    fs.writevSync = ((fd: number, chunks: readonly NodeJS.ArrayBufferView[], pos?: number) => {
      writes.push(chunks.length);
      return writev(fd, chunks, pos);
    }) as typeof fs.writevSync;
    try {
      log.batch(() => {
        for (const tx of txs.slice(1, 5)) log.append(tx);
        assert.deepEqual(writes, [], 'nothing is written before the batch ends');
      });
    } finally {
      fs.writevSync = writev;
    }
    assert.deepEqual(writes, [4]);
    log.append(txs[5]!);
    assert.deepEqual(log.list().map((e) => e.maxTxid), [1, 2, 3, 4, 5, 6]);
    assert.equal(log.read(log.entry(3)).maxTxid, 4);
    log.close();
    assert.deepEqual(scanTxids(dir), [1, 2, 3, 4, 5, 6]);
  });
});

test('a read inside a batch sees the records the batch appended', () => {
  withLog((dir) => {
    const txs = chain(3);
    const log = new TransactionLog(dir, true);
    log.batch(() => {
      for (const tx of txs) log.append(tx);
      assert.equal(log.read(log.entry(2)).maxTxid, 3);
    });
    log.close();
    assert.deepEqual(scanTxids(dir), [1, 2, 3]);
  });
});

test('a batch whose write fails leaves none of its records: the segment is cut back and the log goes on', () => {
  withLog((dir) => {
    const txs = chain(5);
    const log = new TransactionLog(dir, true);
    log.append(txs[0]!);
    log.append(txs[1]!);
    const sizeBefore = fs.statSync(log.entry(0).segment).size;
    const writev = fs.writevSync;
    fs.writevSync = ((fd: number, chunks: readonly NodeJS.ArrayBufferView[], pos?: number) => {
      writev(fd, [(chunks[0] as Buffer).subarray(0, 10)], pos); // part of a record, then the disk is full
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    }) as typeof fs.writevSync;
    try {
      assert.throws(() => log.batch(() => {
        log.append(txs[2]!);
        log.append(txs[3]!);
      }), /ENOSPC/);
    } finally {
      fs.writevSync = writev;
    }
    assert.equal(log.last?.maxTxid, 2);
    assert.equal(fs.statSync(log.entry(0).segment).size, sizeBefore);
    log.append(txs[2]!);
    log.close();
    assert.deepEqual(scanTxids(dir), [1, 2, 3]);
  });
});

test("reset(…, 'soon') (a replica's snapshot) drops the segments and writes the base at once; only its fsync waits", () => {
  withLog((dir) => {
    const log = new TransactionLog(dir, true);
    const txs = chain(3);
    log.batch(() => {
      for (const tx of txs) log.append(tx);
    });
    const base = { txid: 40, pageSize: PAGE, commitSize: 9, timestamp: 1_700_000_000_040, checksum: 0x1234n | CHECKSUM_FLAG };
    log.reset(base, 'soon');
    assert.deepEqual(log.base(), base);
    assert.equal(log.count, 0);
    assert.deepEqual(scanTxids(dir), []);
    assert.deepEqual(new TransactionLog(dir, true).base(), base, 'a fresh reader of the directory sees the base');
    log.close();
  });
});
