// A subscriber that stops reading never holds up the primary's commits, and
// when it reads again it gets every transaction, in order; one that stops
// taking a snapshot is cut off, and the snapshot's locks are let go.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Cluster } from '../support/cluster.js';
import { RecordType, decodeWalSegment, type StreamRecord } from '../../src/replication/records.js';
import { RecordReader } from '../../src/replication/record-reader.js';

/** A primary alone (stopped by cluster.destroy()), with `name` in WAL mode holding an empty table t(v BLOB). */
async function primaryWith(name: string): Promise<{ cluster: Cluster; file: string; db: Database.Database }> {
  const cluster = await Cluster.create(0);
  try {
    await cluster.start(cluster.primary);
    const file = path.join(cluster.primary.mnt, name);
    const db = new Database(file);
    db.pragma('journal_mode=wal');
    db.exec('CREATE TABLE t(v BLOB)');
    return { cluster, file, db };
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
}

/** A raw POST /stream with no positions whose socket reads nothing until resumed. */
async function pausedSubscriber(port: number, hostname: string): Promise<net.Socket> {
  const sock = net.connect({ host: '127.0.0.1', port });
  await new Promise((r) => sock.once('connect', r));
  sock.pause();
  const body = JSON.stringify({ hostname, positions: {} });
  sock.write(`POST /stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  return sock;
}

describe('replication: a slow subscriber', () => {
  test('a stalled stream does not block commits; resumed, it delivers every transaction', async () => {
    const { cluster, file, db } = await primaryWith('slow.db');
    try {
      // A raw HTTP client that reads nothing for now.
      const sock = await pausedSubscriber(cluster.primary.port, 'slow');

      // Far more than socket buffers hold: the primary must not wait for the reader.
      const insert = db.prepare('INSERT INTO t VALUES (randomblob(2000))');
      for (let i = 0; i < 3000; i++) insert.run();
      const want = Number((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n);
      assert.equal(want, 3000);
      const pos = fs.readFileSync(`${file}-pos`, 'utf8');
      const lastTxid = parseInt(pos.slice(0, 16), 16);

      // Now read: skip the HTTP headers and chunk framing, then decode records.
      const records: StreamRecord[] = [];
      const reader = new RecordReader();
      let raw = Buffer.alloc(0);
      let headersDone = false;
      let maxTxid = 0;
      sock.resume();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stream stalled at TXID ${maxTxid} of ${lastTxid}`)), 60_000);
        sock.on('data', (d: Buffer) => {
          raw = Buffer.concat([raw, d]);
          if (!headersDone) {
            const end = raw.indexOf('\r\n\r\n');
            if (end < 0) return;
            assert.match(raw.subarray(0, end).toString(), /^HTTP\/1\.1 200/);
            raw = raw.subarray(end + 4);
            headersDone = true;
          }
          // Chunked transfer encoding: <hex size>\r\n<data>\r\n
          for (;;) {
            const eol = raw.indexOf('\r\n');
            if (eol < 0) break;
            const size = parseInt(raw.subarray(0, eol).toString(), 16);
            if (raw.length < eol + 2 + size + 2) break;
            reader.push(raw.subarray(eol + 2, eol + 2 + size));
            raw = raw.subarray(eol + 2 + size + 2);
          }
          for (let r = reader.next(); r; r = reader.next()) {
            records.push(r);
            if (r.type === RecordType.Snapshot || r.type === RecordType.WalSegment) maxTxid = Math.max(maxTxid, r.maxTxid);
          }
          if (maxTxid >= lastTxid) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      sock.destroy();
      db.close();

      // Segments follow on without a gap (after an optional snapshot, for a new subscriber).
      let next = 0;
      for (const r of records) {
        if (r.type === RecordType.Snapshot) next = r.maxTxid + 1;
        if (r.type !== RecordType.WalSegment) continue;
        if (next) assert.equal(r.minTxid, next);
        for (const tx of decodeWalSegment(r)) assert.ok(tx.maxTxid >= tx.minTxid);
        next = r.maxTxid + 1;
      }
      assert.equal(next, lastTxid + 1);
    } finally {
      await cluster.destroy();
    }
  });

  test('a subscriber that stops taking a snapshot is cut off after 30 s; commits go on meanwhile, and the snapshot\'s locks are let go', async () => {
    const { cluster, db } = await primaryWith('stall.db');
    try {
      // ~24 MB: far more than the socket buffers between the two ends hold.
      db.transaction(() => {
        const insert = db.prepare('INSERT INTO t VALUES (randomblob(2000))');
        for (let i = 0; i < 12_000; i++) insert.run();
      })();

      // A new subscriber gets a snapshot; this one reads nothing of it.
      const asked = Date.now();
      const sock = await pausedSubscriber(cluster.primary.port, 'stalled');
      const closed = new Promise<void>((r) => sock.once('close', () => r()));

      // The snapshot holds SQLite's checkpoint lock while it goes out: commits carry on in the WAL.
      const insert = db.prepare('INSERT INTO t VALUES (randomblob(100))');
      for (let i = 0; i < 200; i++) insert.run();
      const committed = Date.now();

      // The primary cuts it off (the bytes it had sent still sit in the socket buffers, unread).
      const cutOff = /the replica took no snapshot bytes for too long; closing its stream/;
      while (!cutOff.test(cluster.primary.proc!.output)) {
        assert.ok(Date.now() - asked < 45_000, 'the stalled stream is still open after 45 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      const end = Date.now();
      assert.ok(end - asked >= 29_000, `cut off after ${end - asked} ms, before the stall timeout`);
      assert.ok(committed < end, 'the commits waited for the stalled stream to be cut off');
      sock.resume(); // what was sent drains, then the stream ends
      await closed;
      // The locks are let go: a full checkpoint completes (busy = 0).
      assert.deepEqual(db.pragma('wal_checkpoint(TRUNCATE)'), [{ busy: 0, log: 0, checkpointed: 0 }]);
      assert.equal((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 12_200);
      db.close();
    } finally {
      await cluster.destroy();
    }
  });
});
