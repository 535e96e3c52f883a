// The cluster id: recorded in the lease store by the first primary and in
// each node's data directory, so a node never mixes two clusters' data.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export class ClusterIdFile {
  private cached?: string;

  constructor(private readonly dataDir: string) {}

  private get file(): string {
    return path.join(this.dataDir, 'clusterid');
  }

  read(): string | undefined {
    if (this.cached) return this.cached;
    try {
      const id = fs.readFileSync(this.file, 'utf8').trim();
      if (id) this.cached = id;
    } catch {
      // none yet
    }
    return this.cached;
  }

  write(id: string): void {
    const tmp = this.file + '.tmp';
    fs.writeFileSync(tmp, id + '\n');
    fs.renameSync(tmp, this.file);
    this.cached = id;
  }

  /** A new id: "LFSC" and 16 hex digits, as LiteFS's look. */
  generate(): string {
    return 'LFSC' + crypto.randomBytes(8).toString('hex').toUpperCase();
  }
}
