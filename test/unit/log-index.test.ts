// The log's compact index (src/store/log-index.ts) against a plain array of
// entries doing the same operations: appends across segments, cuts from
// the end, whole segments dropped from the front, lookups by TXID, through
// many rounds of growing and compacting its columns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogIndex, type LogEntry } from '../../src/store/log-index.js';
import { rng } from '../support/random.js';

/** The model: what the index must answer, as the log kept it before (an array of objects). */
class ModelIndex {
  entries: LogEntry[] = [];
  segments(): { name: string; count: number; maxTimestamp: number; maxTxid: number }[] {
    const out: { name: string; count: number; maxTimestamp: number; maxTxid: number }[] = [];
    for (const e of this.entries) {
      const s = out[out.length - 1];
      if (s && s.name === e.segment) {
        s.count++;
        s.maxTimestamp = Math.max(s.maxTimestamp, e.timestamp);
        s.maxTxid = e.maxTxid;
      } else out.push({ name: e.segment, count: 1, maxTimestamp: e.timestamp, maxTxid: e.maxTxid });
    }
    return out;
  }
}

function assertSame(index: LogIndex, model: ModelIndex, step: string): void {
  assert.equal(index.length, model.entries.length, `${step}: length`);
  for (let i = 0; i < model.entries.length; i++) assert.deepEqual(index.at(i), model.entries[i], `${step}: entry ${i}`);
  assert.deepEqual(index.last, model.entries[model.entries.length - 1], `${step}: last`);
  const segments = index.segmentSummaries.map((s) => ({ ...s }));
  const expected = model.segments();
  // After a cut, a segment's newest timestamp may stay higher than what is left (retention keeps it longer).
  assert.deepEqual(segments.map(({ name, count, maxTxid }) => ({ name, count, maxTxid })), expected.map(({ name, count, maxTxid }) => ({ name, count, maxTxid })), `${step}: segments`);
  for (let k = 0; k < expected.length; k++) assert.ok(segments[k]!.maxTimestamp >= expected[k]!.maxTimestamp, `${step}: segment ${k} timestamp`);
}

test('the compact index answers as an array of entries does, through appends, cuts from the end and segments dropped from the front', () => {
  const random = rng(20261204);
  const index = new LogIndex();
  const model = new ModelIndex();
  let txid = 0;
  let segment = 0;
  let offset = 0;
  for (let round = 0; round < 600; round++) {
    // Phases of growth and of retention by turns, so the columns both grow and move their entries to the front.
    const growing = Math.floor(round / 100) % 2 === 0;
    // Steady phases: about as many segments dropped as filled, as under retention, so the tail reaches the columns' end while the head has moved on.
    const r = growing ? random() : random() < 0.55 ? 0 : 0.75 + random() * 0.2;
    if (r < 0.6) {
      // A burst of appends; a new segment now and then.
      const n = 1 + Math.floor(random() * 300);
      for (let i = 0; i < n; i++) {
        if (random() < 0.01) [segment, offset] = [segment + 1, 0];
        const span = random() < 0.1 ? 1 + Math.floor(random() * 5) : 0;
        const length = 100 + Math.floor(random() * 5000);
        const e: LogEntry = { segment: `seg-${String(segment).padStart(6, '0')}`, offset, length, minTxid: txid + 1, maxTxid: txid + 1 + span, timestamp: 1_700_000_000_000 + Math.floor(random() * 1e6), pageSize: random() < 0.05 ? 8192 : 4096 };
        txid += 1 + span;
        offset += length;
        index.push(e);
        model.entries.push(e);
      }
    } else if (r < 0.75 && model.entries.length) {
      // A failed write or a damaged tail: the newest entries go, possibly whole segments.
      const keep = model.entries.length - Math.floor(random() * Math.min(model.entries.length, 400));
      index.truncate(keep);
      model.entries.length = keep;
      const last = model.entries[model.entries.length - 1];
      txid = last ? last.maxTxid : txid;
      offset = last && last.segment === `seg-${String(segment).padStart(6, '0')}` ? last.offset + last.length : offset;
    } else if (r < 0.95 && model.segments().length > 1) {
      // Retention: the oldest segment's entries go.
      const first = model.segments()[0]!;
      index.dropOldestSegment();
      model.entries.splice(0, first.count);
    } else if (r >= 0.995) {
      index.clear();
      model.entries = [];
      [segment, offset] = [segment + 1, 0];
    }
    if (round % 20 === 0) assertSame(index, model, `round ${round}`);
    // Every TXID that starts an entry is found at its place; others are not.
    for (let k = 0; k < 20 && model.entries.length; k++) {
      const i = Math.floor(random() * model.entries.length);
      assert.equal(index.indexOf(model.entries[i]!.minTxid), i);
      const e = model.entries[i]!;
      if (e.maxTxid > e.minTxid) assert.equal(index.indexOf(e.minTxid + 1), -1);
    }
  }
  assertSame(index, model, 'end');
  assert.equal(index.indexOf(0), -1);
  assert.equal(index.indexOf(txid + 1), -1);
  assert.throws(() => index.at(index.length), RangeError);
});

test('a log whose retention drops as much as it appends keeps its entries in place: the columns move them to the front instead of growing', () => {
  const index = new LogIndex();
  const model = new ModelIndex();
  for (let txid = 1; txid <= 10_000; txid++) {
    const e: LogEntry = { segment: `seg-${String(Math.ceil(txid / 7)).padStart(6, '0')}`, offset: ((txid - 1) % 7) * 100, length: 100, minTxid: txid, maxTxid: txid, timestamp: txid, pageSize: 4096 };
    index.push(e);
    model.entries.push(e);
    while (model.segments().length > 20) {
      index.dropOldestSegment();
      model.entries.splice(0, model.segments()[0]!.count);
    }
    if (txid % 997 === 0) assertSame(index, model, `TXID ${txid}`);
  }
  assertSame(index, model, 'end');
  assert.equal(index.indexOf(10_000), model.entries.length - 1);
});
