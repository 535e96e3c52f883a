// litefs run [-promote] [-if-candidate] -- CMD: runs a command against the
// local node, first making it the primary (-promote: a handoff from the
// current primary) or skipping it on a node that can never be primary.
import { spawn } from 'node:child_process';
import { parseFlags, UsageError } from './flags.js';
import { nodeUrl } from './transfer.js';

const FLAGS = { config: 'string', url: 'string', promote: 'boolean', 'if-candidate': 'boolean', 'with-halt-lock-on': 'string' } as const;

interface NodeInfoReply {
  candidate: boolean;
  isPrimary: boolean;
  primary: string | null;
}

async function call(url: string, method: 'GET' | 'POST'): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { method, signal: AbortSignal.timeout(15_000) });
  } catch (err) {
    throw new UsageError(`litefs run: cannot reach the node at ${new URL(url).origin}: ${(err as Error).message}`);
  }
  const body = (await res.json().catch(() => ({}))) as { error?: string };
  if (!res.ok) throw new UsageError(`litefs run: ${new URL(url).pathname} failed: ${body.error ?? res.status}`);
  return body;
}

export async function runRun(argv: string[]): Promise<number> {
  const { flags, args, rest } = parseFlags(argv, FLAGS, 'run');
  const cmd = [...args, ...rest];
  if (cmd.length === 0) throw new UsageError('litefs run: no command given (litefs run [-promote] [-if-candidate] -- CMD [ARGS...])');
  if (flags['with-halt-lock-on'] !== undefined) throw new UsageError('litefs run: -with-halt-lock-on is not supported (HALT write forwarding is not implemented); run the command on the primary, or use -promote');
  const base = nodeUrl(flags);
  const info = (await call(`${base}/info`, 'GET')) as NodeInfoReply;
  if (flags['if-candidate'] === true && !info.candidate) {
    process.stderr.write('litefs run: this node is not a candidate; not running the command\n');
    return 0;
  }
  if (flags.promote === true && !info.isPrimary) {
    await call(`${base}/promote`, 'POST');
    process.stderr.write('litefs run: this node is now the primary\n');
  }
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: 'inherit' });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, forward);
  return new Promise((resolve) => {
    child.on('error', (err) => {
      process.stderr.write(`litefs run: cannot run ${cmd[0]}: ${err.message}\n`);
      resolve(127);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
  });
}
