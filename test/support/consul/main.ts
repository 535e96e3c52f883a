// CLI entry of the Consul stand-in (test-only):
//   node dist/test/support/consul/main.js --port N [--token T] [--state FILE]
//        [--ttl-multiplier 2] [--ttl-scale 1] [--host 127.0.0.1]
// Prints `consul stand-in listening on http://HOST:PORT` once ready.

import { startConsulStandIn, type StandInOptions } from './server.js';

function parseArgs(argv: string[]): StandInOptions {
  const opts: StandInOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    i++;
    const num = (): number => {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${flag}: expected a number, got ${JSON.stringify(value)}`);
      return n;
    };
    switch (flag) {
      case '--port': opts.port = num(); break;
      case '--host': opts.host = value; break;
      case '--token': opts.token = value; break;
      case '--state': opts.stateFile = value; break;
      case '--ttl-multiplier': opts.ttlMultiplier = num(); break;
      case '--ttl-scale': opts.ttlScale = num(); break;
      default: throw new Error(`unknown flag ${flag}`);
    }
  }
  return opts;
}

let opts: StandInOptions;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`consul stand-in: ${(err as Error).message}\n`);
  process.exit(2);
}
const standIn = await startConsulStandIn(opts);
process.stdout.write(`consul stand-in listening on ${standIn.url}\n`);
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    void standIn.close().then(() => process.exit(0));
  });
}
