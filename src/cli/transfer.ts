// litefs import / export: move a whole database to or from a running node
// over its HTTP API, with a progress bar when stderr is a terminal.
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { loadConfig, parseHostPort } from '../config/index.js';
import { parseFlags, UsageError } from './flags.js';

const FLAGS = { name: 'string', url: 'string', config: 'string' } as const;

/** The node's URL: -url, else the http.addr of -config, else LiteFS's default port on localhost. */
export function nodeUrl(flags: Record<string, string | boolean>): string {
  if (typeof flags.url === 'string') return flags.url.replace(/\/$/, '');
  if (typeof flags.config === 'string') {
    const hp = parseHostPort(loadConfig({ path: flags.config }).http.addr);
    if (hp) return `http://${hp.host && hp.host !== '0.0.0.0' ? hp.host : 'localhost'}:${hp.port}`;
  }
  return 'http://localhost:20202';
}

function progress(total: number | undefined, label: string): Transform {
  let done = 0;
  let last = 0;
  const tty = process.stderr.isTTY;
  const draw = (final: boolean) => {
    const mb = (done / 1048576).toFixed(1);
    const pct = total ? ` ${Math.floor((done / total) * 100)}%` : '';
    const width = 30;
    const bar = total ? '[' + '#'.repeat(Math.floor((done / total) * width)).padEnd(width) + ']' : '';
    process.stderr.write(`\r${label} ${bar}${pct} ${mb} MiB${final ? '\n' : ''}`);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      if (tty && Date.now() - last > 100) {
        last = Date.now();
        draw(false);
      }
      cb(null, chunk);
    },
    flush(cb) {
      if (tty) draw(true);
      cb();
    },
  });
}

async function failure(res: Response, what: string): Promise<never> {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: string };
    if (body.error) message = body.error;
  } catch {
    // not JSON: keep the status line
  }
  throw new UsageError(`litefs ${what}: ${message}`);
}

function need(flags: Record<string, string | boolean>, args: string[], what: string): { name: string; file: string } {
  if (typeof flags.name !== 'string' || !flags.name) throw new UsageError(`litefs ${what}: -name DB is required`);
  if (args.length !== 1) throw new UsageError(`litefs ${what}: give exactly one file path`);
  return { name: flags.name, file: args[0]! };
}

async function request(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new UsageError(`litefs ${what}: cannot reach ${new URL(url).origin}: ${cause}`);
  }
}

export async function runImport(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, FLAGS, 'import');
  const { name, file } = need(flags, args, 'import');
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    throw new UsageError(`litefs import: cannot read ${file}`);
  }
  const body = Readable.toWeb(fs.createReadStream(file).pipe(progress(size, `importing ${path.basename(file)}`))) as ReadableStream;
  const res = await request(`${nodeUrl(flags)}/import?name=${encodeURIComponent(name)}`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' }, duplex: 'half' } as RequestInit, 'import');
  if (!res.ok) await failure(res, 'import');
  const result = (await res.json()) as { txid: number };
  process.stdout.write(`imported ${file} into ${name} (TXID ${result.txid})\n`);
  return 0;
}

export async function runExport(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, FLAGS, 'export');
  const { name, file } = need(flags, args, 'export');
  const res = await request(`${nodeUrl(flags)}/export?name=${encodeURIComponent(name)}`, {}, 'export');
  if (!res.ok || !res.body) await failure(res, 'export');
  const length = Number(res.headers.get('content-length')) || undefined;
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await pipeline(Readable.fromWeb(res.body! as import('node:stream/web').ReadableStream), progress(length, `exporting ${name}`), fs.createWriteStream(tmp));
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  process.stdout.write(`exported ${name} to ${file}\n`);
  return 0;
}
