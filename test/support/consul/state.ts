// The stand-in's data model, after Consul's state store: one Raft-style index
// bumped by every write, per-table indexes (kvs, sessions) for blocking
// queries, sessions with TTL timers and invalidation behaviours, KV entries
// with locks, tombstones, and the leader's in-memory lock-delay table.
// Test-only: production code never imports this.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { parseGoDuration } from './duration.js';

/** Consul's session_ttl_min default and structs.SessionTTLMax, in ns. */
export const SESSION_TTL_MIN = 10e9;
export const SESSION_TTL_MAX = 86_400e9;
/** structs.MaxLockDelay: a longer LockDelay is accepted but capped at invalidation. */
export const MAX_LOCK_DELAY = 60e9;
export const NODE_NAME = 'consul-stand-in';
export const SERF_CHECK = 'serfHealth';

/** An error answered as HTTP `status` with `message` as a text/plain body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Session {
  ID: string;
  Name: string;
  Node: string;
  /** Nanoseconds, as Go marshals a time.Duration. */
  LockDelay: number;
  Behavior: 'release' | 'delete';
  TTL: string;
  NodeChecks: string[];
  ServiceChecks: { ID: string; Namespace?: string }[] | null;
  CreateIndex: number;
  ModifyIndex: number;
}

export interface KVEntry {
  Key: string;
  Flags: number;
  /** Base64, or null for an empty value (Go's nil []byte). */
  Value: string | null;
  Session?: string;
  LockIndex: number;
  CreateIndex: number;
  ModifyIndex: number;
}

interface Saved {
  index: number;
  kvIndex: number;
  sessionsIndex: number;
  kv: KVEntry[];
  sessions: Session[];
  tombstones: [string, number][];
}

export interface StateOptions {
  stateFile?: string;
  /** Consul's SessionTTLMultiplier: a session is invalidated TTL × this after its last renewal. */
  ttlMultiplier?: number;
  /** Test-only time compression of session TTL timers (1 = real time, as Consul). */
  ttlScale?: number;
}

type Watcher = { key: string; prefix: boolean; fire: () => void };

export class ConsulState {
  index = 1;
  kvIndex = 0;
  sessionsIndex = 0;
  readonly kv = new Map<string, KVEntry>();
  readonly sessions = new Map<string, Session>();
  /** Index at which each deleted key went, so prefix reads never see their index go backwards. */
  private readonly tombstones = new Map<string, number>();
  /** Key → Date.now() before which no session may lock it (in memory only, as on Consul's leader). */
  private readonly lockDelay = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly kvWatchers = new Set<Watcher>();
  private readonly sessionWatchers = new Set<() => void>();
  private readonly ttlMultiplier: number;
  private readonly ttlScale: number;

  constructor(private readonly opts: StateOptions = {}) {
    this.ttlMultiplier = opts.ttlMultiplier ?? 2;
    this.ttlScale = opts.ttlScale ?? 1;
    if (opts.stateFile && fs.existsSync(opts.stateFile)) this.load(opts.stateFile);
  }

  // ---- sessions ----

  createSession(s: Omit<Session, 'ID' | 'CreateIndex' | 'ModifyIndex'>): string {
    if (s.Node !== NODE_NAME) throw new HttpError(500, 'Missing node registration');
    for (const c of s.NodeChecks) if (c !== SERF_CHECK) throw new HttpError(500, `Missing check '${c}' registration`);
    for (const c of s.ServiceChecks ?? []) throw new HttpError(500, `Missing check '${c.ID}' registration`);
    let id = randomUUID();
    while (this.sessions.has(id)) id = randomUUID();
    const idx = ++this.index;
    const session: Session = { ID: id, ...s, CreateIndex: idx, ModifyIndex: idx };
    this.sessions.set(id, session);
    this.sessionsIndex = idx;
    this.resetTimer(session);
    this.commit([]);
    return id;
  }

  /** Renewal is not a Raft write in Consul: it only resets the leader's timer. */
  renewSession(id: string): Session | undefined {
    const s = this.sessions.get(id);
    if (s) this.resetTimer(s);
    return s;
  }

  /** Explicit destroy and TTL expiry both invalidate: Behavior applies, lock-delay starts. Unknown ids are a no-op. */
  destroySession(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    const idx = ++this.index;
    this.sessions.delete(id);
    this.sessionsIndex = idx;
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
    const delay = Math.min(s.LockDelay, MAX_LOCK_DELAY) / 1e6;
    const now = Date.now();
    const touched: string[] = [];
    for (const e of this.kv.values()) {
      if (e.Session !== id) continue;
      touched.push(e.Key);
      if (s.Behavior === 'delete') this.deleteKey(e.Key, idx);
      else this.kv.set(e.Key, { ...withoutSession(e), ModifyIndex: idx });
      if (delay > 0) this.lockDelay.set(e.Key, now + delay);
    }
    if (touched.length) this.kvIndex = idx;
    this.commit(touched);
  }

  private resetTimer(s: Session): void {
    clearTimeout(this.timers.get(s.ID));
    this.timers.delete(s.ID);
    const ttl = s.TTL === '' ? 0 : parseTTL(s.TTL);
    if (ttl <= 0) return;
    const t = setTimeout(() => this.destroySession(s.ID), (ttl / 1e6) * this.ttlMultiplier * this.ttlScale);
    t.unref();
    this.timers.set(s.ID, t);
  }

  // ---- KV ----

  /** A single key (or a prefix) and the index a blocking query compares against. */
  kvRead(key: string, recurse: boolean): { index: number; entries: KVEntry[] } {
    if (!recurse) {
      const e = this.kv.get(key);
      return { index: Math.max(1, this.kvIndex), entries: e ? [e] : [] };
    }
    const entries = [...this.kv.values()].filter((e) => e.Key.startsWith(key)).sort((a, b) => (a.Key < b.Key ? -1 : 1));
    let index = 0;
    if (key !== '') {
      for (const e of entries) index = Math.max(index, e.ModifyIndex);
      for (const [k, i] of this.tombstones) if (k.startsWith(key)) index = Math.max(index, i);
    }
    return { index: Math.max(1, index || this.kvIndex), entries };
  }

  /** PUT /v1/kv: plain set, ?cas, ?acquire or ?release (release wins over acquire over cas, as Consul's endpoint). */
  kvPut(key: string, value: Buffer, q: { flags: number; cas?: number; acquire?: string; release?: string }): boolean {
    const existing = this.kv.get(key);
    const Value = value.length ? value.toString('base64') : null;
    if (q.release !== undefined) {
      if (q.release === '') throw new HttpError(500, 'missing session');
      if (!existing || existing.Session !== q.release) return false;
      // Releasing is not an invalidation: no lock-delay (Consul applies it only when a session ends).
      return this.write(key, { ...withoutSession(existing), Value, Flags: q.flags });
    }
    if (q.acquire !== undefined) {
      // Consul checks lock-delay before the Raft apply, so even an invalid session just gets false.
      if ((this.lockDelay.get(key) ?? 0) > Date.now()) return false;
      if (q.acquire === '') throw new HttpError(500, 'missing session');
      if (!this.sessions.has(q.acquire)) throw new HttpError(500, `invalid session ${JSON.stringify(q.acquire)}`);
      if (existing?.Session && existing.Session !== q.acquire) return false;
      // Same holder: value updated, LockIndex kept. New holder: LockIndex + 1.
      const lockIndex = existing ? (existing.Session === q.acquire ? existing.LockIndex : existing.LockIndex + 1) : 1;
      return this.write(key, { Key: key, Flags: q.flags, Value, Session: q.acquire, LockIndex: lockIndex });
    }
    if (q.cas !== undefined) {
      if (q.cas === 0 && existing) return false;
      if (q.cas !== 0 && (!existing || existing.ModifyIndex !== q.cas)) return false;
    }
    // A plain set keeps whoever holds the lock.
    const base = existing ?? { Key: key, LockIndex: 0 };
    return this.write(key, { ...base, Key: key, Flags: q.flags, Value });
  }

  kvDelete(key: string, q: { recurse: boolean; cas?: number }): boolean {
    if (q.recurse) {
      const keys = [...this.kv.keys()].filter((k) => k.startsWith(key));
      if (!keys.length) return true;
      const idx = ++this.index;
      for (const k of keys) this.deleteKey(k, idx);
      this.kvIndex = idx;
      this.commit(keys);
      return true;
    }
    const existing = this.kv.get(key);
    if (q.cas !== undefined && (!existing || existing.ModifyIndex !== q.cas)) return !existing;
    if (!existing) return true;
    const idx = ++this.index;
    this.deleteKey(key, idx);
    this.kvIndex = idx;
    this.commit([key]);
    return true;
  }

  private write(key: string, e: Omit<KVEntry, 'CreateIndex' | 'ModifyIndex'> & Partial<KVEntry>): boolean {
    const existing = this.kv.get(key);
    // Like Consul's kvsSetTxn: an identical entry is not rewritten (no index bump, no wake-up).
    if (existing && existing.Value === e.Value && existing.Flags === e.Flags && existing.Session === e.Session && existing.LockIndex === e.LockIndex) return true;
    const idx = ++this.index;
    const entry: KVEntry = { Key: key, Flags: e.Flags, Value: e.Value, LockIndex: e.LockIndex, CreateIndex: existing?.CreateIndex ?? idx, ModifyIndex: idx };
    if (e.Session) entry.Session = e.Session;
    this.kv.set(key, entry);
    this.tombstones.delete(key);
    this.kvIndex = idx;
    this.commit([key]);
    return true;
  }

  private deleteKey(key: string, idx: number): void {
    this.kv.delete(key);
    this.tombstones.set(key, idx);
  }

  // ---- blocking queries ----

  /** Calls fire when `key` (or any key under it, for a prefix) changes. Returns the unsubscribe function. */
  watchKV(key: string, prefix: boolean, fire: () => void): () => void {
    const w = { key, prefix, fire };
    this.kvWatchers.add(w);
    return () => this.kvWatchers.delete(w);
  }

  watchSessions(fire: () => void): () => void {
    this.sessionWatchers.add(fire);
    return () => this.sessionWatchers.delete(fire);
  }

  private commit(keys: string[]): void {
    this.save();
    for (const w of [...this.kvWatchers]) {
      if (keys.some((k) => (w.prefix ? k.startsWith(w.key) : k === w.key))) w.fire();
    }
    for (const fire of [...this.sessionWatchers]) fire();
  }

  // ---- persistence ----

  /** Written before the HTTP answer, tmp + rename, so a kill -9 never leaves half a file or loses an acknowledged write. */
  private save(): void {
    const file = this.opts.stateFile;
    if (!file) return;
    const data: Saved = {
      index: this.index,
      kvIndex: this.kvIndex,
      sessionsIndex: this.sessionsIndex,
      kv: [...this.kv.values()],
      sessions: [...this.sessions.values()],
      tombstones: [...this.tombstones],
    };
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(data));
    fs.renameSync(`${file}.tmp`, file);
  }

  /** TTL timers start afresh at load, as Consul's new leader resets them; lock-delays are not kept (Consul keeps them in memory). */
  private load(file: string): void {
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as Saved;
    this.index = data.index;
    this.kvIndex = data.kvIndex;
    this.sessionsIndex = data.sessionsIndex;
    for (const e of data.kv) this.kv.set(e.Key, e);
    for (const [k, i] of data.tombstones) this.tombstones.set(k, i);
    for (const s of data.sessions) {
      this.sessions.set(s.ID, s);
      this.resetTimer(s);
    }
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.kvWatchers.clear();
    this.sessionWatchers.clear();
  }
}

function withoutSession(e: KVEntry): KVEntry {
  const { Session: _drop, ...rest } = e;
  return rest;
}

function parseTTL(ttl: string): number {
  try {
    return parseGoDuration(ttl);
  } catch {
    return 0;
  }
}
