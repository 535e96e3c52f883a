// An ObjectStore in a local directory: key `a/b/c` is the file `<dir>/a/b/c`.
// The reference implementation of the interface (unit tests use it), written
// the way S3 behaves: a put is atomic (temp file + rename), a missing key is
// a not-found error, listing is in key order.
import fs from 'node:fs';
import path from 'node:path';
import { ObjectStoreError, type ObjectStore, type StoredObject } from './object-store.js';

export class DirectoryObjectStore implements ObjectStore {
  readonly label: string;

  constructor(private readonly dir: string) {
    this.label = dir;
    if (!fs.existsSync(dir)) throw new ObjectStoreError(`${dir}: no such directory`, 'NoSuchBucket', true);
  }

  private file(key: string): string {
    if (key.split('/').some((part) => part === '..')) throw new ObjectStoreError(`${this.label}/${key}: invalid key`, 'InvalidKey', true);
    return path.join(this.dir, key);
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const walk = (rel: string) => {
      let names: string[];
      try {
        names = fs.readdirSync(path.join(this.dir, rel));
      } catch {
        return;
      }
      for (const name of names) {
        const key = rel ? `${rel}/${name}` : name;
        const st = fs.statSync(path.join(this.dir, key));
        if (st.isDirectory()) {
          if (prefix.startsWith(key + '/') || (key + '/').startsWith(prefix)) walk(key);
        } else if (key.startsWith(prefix) && !name.endsWith('.tmp')) {
          out.push({ key, size: st.size, lastModified: Math.floor(st.mtimeMs) });
        }
      }
    };
    walk('');
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async listPrefixes(prefix: string): Promise<string[]> {
    const found = new Set<string>();
    for (const o of await this.list(prefix)) {
      const rest = o.key.slice(prefix.length);
      const slash = rest.indexOf('/');
      if (slash >= 0) found.add(prefix + rest.slice(0, slash + 1));
    }
    return [...found].sort();
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Buffer> {
    try {
      const bytes = fs.readFileSync(this.file(key));
      return range ? bytes.subarray(range.start, range.end) : bytes;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ObjectStoreError(`${this.label}/${key}: no such object`, 'NoSuchKey', true, true);
      throw err;
    }
  }

  async getStream(key: string): Promise<AsyncIterable<Buffer>> {
    const file = this.file(key);
    if (!fs.existsSync(file)) throw new ObjectStoreError(`${this.label}/${key}: no such object`, 'NoSuchKey', true, true);
    return fs.createReadStream(file, { highWaterMark: 1024 * 1024 });
  }

  async put(key: string, body: Buffer, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const file = this.file(key);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file + '.tmp', body);
    fs.renameSync(file + '.tmp', file);
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) fs.rmSync(this.file(key), { force: true });
  }
}
