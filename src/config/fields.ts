// Typed, strict reading of the parsed YAML: each reader checks one value and
// throws a one-line ConfigError naming the file, the key path, what was
// expected and (when known) the line.

import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

import { parseDuration } from './duration.js';
import { ConfigError } from './types.js';

export type KeyPath = readonly (string | number)[];

/** `['lease', 'consul', 'ttl']` → `lease.consul.ttl`; `['exec', 1, 'cmd']` → `exec[1].cmd`. */
export function formatKeyPath(path: KeyPath): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : seg;
  return out;
}

/** Short description of a value for "got ..." in messages. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

/** Edit distance counting insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** Hints for keys that moved in LiteFS's history. */
const MOVED: Record<string, string> = {
  consul: 'LiteFS 0.4 moved it to lease.consul (with lease.type: consul)',
  static: 'LiteFS 0.4 replaced it with lease.type: static and lease.candidate',
};

const BOOL_WORDS: Record<string, boolean> = {
  true: true, True: true, TRUE: true, yes: true, Yes: true, YES: true, on: true, On: true, ON: true, y: true, Y: true,
  false: false, False: false, FALSE: false, no: false, No: false, NO: false, off: false, Off: false, OFF: false, n: false, N: false,
};

export class Source {
  constructor(
    readonly file: string,
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  /** The YAML node at `path` (the key node when `atKey`), following aliases. */
  private node(path: KeyPath, atKey: boolean): Node | undefined {
    let cur: unknown = this.doc.contents;
    for (let i = 0; i < path.length; i++) {
      if (isAlias(cur)) cur = cur.resolve(this.doc);
      const seg = path[i]!;
      if (isMap(cur)) {
        const pair = cur.items.find((p) => isPair(p) && (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
        if (!pair) return undefined;
        cur = atKey && i === path.length - 1 ? pair.key : pair.value;
      } else if (isSeq(cur) && typeof seg === 'number') {
        cur = cur.items[seg];
      } else {
        return undefined;
      }
    }
    return (cur ?? undefined) as Node | undefined;
  }

  /** 1-based line of `path`, else of its nearest enclosing key that exists. */
  lineOf(path: KeyPath, atKey = false): number | undefined {
    for (let len = path.length; len > 0; len--) {
      const n = this.node(path.slice(0, len), atKey || len < path.length);
      if (n?.range) return Math.max(1, this.lines.linePos(n.range[0]).line);
    }
    return undefined;
  }

  /** The source text of a scalar, e.g. `0123` for a value YAML read as 123. */
  sourceText(path: KeyPath): string | undefined {
    const n = this.node(path, false);
    return isScalar(n) && typeof n.source === 'string' ? n.source : undefined;
  }

  /** Throws `<file>: <key>: <detail> (line N)`. */
  fail(path: KeyPath, detail: string, atKey = false): never {
    const key = formatKeyPath(path);
    const line = this.lineOf(path, atKey);
    throw new ConfigError(`${this.file}: ${key ? `${key}: ` : ''}${detail}${line ? ` (line ${line})` : ''}`, { file: this.file, key: key || undefined, line });
  }

  private failUnknown(path: KeyPath, known: readonly string[]): never {
    const key = formatKeyPath(path);
    const name = String(path[path.length - 1]);
    const line = this.lineOf(path, true);
    let hint = MOVED[key] ? `; ${MOVED[key]}` : '';
    if (!hint) {
      const best = known.map((k) => ({ k, d: editDistance(name, k) })).sort((a, b) => a.d - b.d)[0];
      if (best && best.d <= Math.max(1, Math.floor(best.k.length / 3))) hint = `; did you mean "${best.k}"?`;
    }
    throw new ConfigError(
      `${this.file}: unknown key "${key}" (known: ${known.join(', ')})${hint}${line ? ` (line ${line})` : ''}`,
      { file: this.file, key, line },
    );
  }

  /** A mapping section with only `known` keys; undefined when absent or null. */
  map(path: KeyPath, v: unknown, known: readonly string[]): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
      this.fail(path, `expected a mapping with keys ${known.join(', ')}, got ${describe(v)}`);
    }
    const obj = v as Record<string, unknown>;
    for (const k of Object.keys(obj)) if (!known.includes(k)) this.failUnknown([...path, k], known);
    return obj;
  }

  /** A string; numbers and booleans are taken as written. '' and null mean unset. */
  str(path: KeyPath, v: unknown): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return this.sourceText(path) ?? String(v);
    if (typeof v !== 'string') this.fail(path, `expected a string, got ${describe(v)}`);
    return v === '' ? undefined : v;
  }

  bool(path: KeyPath, v: unknown): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'boolean') return v;
    if (typeof v === 'string' && v in BOOL_WORDS) return BOOL_WORDS[v];
    if (v === '') return undefined;
    return this.fail(path, `expected true or false, got ${describe(v)}`);
  }

  /** A non-negative duration in ms; `min` (ms) is an optional lower bound. */
  duration(path: KeyPath, v: unknown, min = 0): number | undefined {
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'number' || typeof v === 'bigint') {
      this.fail(path, `expected a duration like "10s", got ${String(v)} (a number without a unit; write e.g. "${String(v)}s" for seconds or "${String(v)}ms" for milliseconds)`);
    }
    if (typeof v !== 'string') this.fail(path, `expected a duration like "10s", got ${describe(v)}`);
    const ms = parseDuration(v);
    if (ms === undefined) this.fail(path, `expected a duration like "10s", "1m30s" or "500ms", got ${describe(v)}`);
    if (ms < 0) this.fail(path, `expected a duration that is not negative, got ${describe(v)}`);
    if (ms < min) this.fail(path, `expected a duration of at least ${min >= 1000 ? `${min / 1000}s` : `${min}ms`}, got ${describe(v)}`);
    return ms;
  }

  int(path: KeyPath, v: unknown, min: number): number | undefined {
    if (v === undefined || v === null || v === '') return undefined;
    const n = typeof v === 'string' && /^[+-]?\d+$/.test(v.trim()) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) this.fail(path, `expected a whole number, got ${describe(v)}`);
    if (n < min) this.fail(path, `expected a whole number of at least ${min}, got ${n}`);
    return n;
  }

  /** One of `allowed`. */
  oneOf<T extends string>(path: KeyPath, v: unknown, allowed: readonly T[]): T | undefined {
    const s = this.str(path, v);
    if (s === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(s)) this.fail(path, `expected one of ${allowed.join(', ')}, got ${describe(s)}`);
    return s as T;
  }

  /** A list of non-empty strings; a single string is a one-item list. */
  strList(path: KeyPath, v: unknown): string[] | undefined {
    if (v === undefined || v === null || v === '') return undefined;
    const items = Array.isArray(v) ? v : typeof v === 'string' ? [v] : this.fail(path, `expected a list of strings, got ${describe(v)}`);
    return items.map((item, i) => {
      const s = this.str([...path, i], item);
      if (s === undefined) this.fail([...path, i], `expected a non-empty string, got ${describe(item)}`);
      return s;
    });
  }
}
