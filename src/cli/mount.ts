// litefs mount: load the config, mount, run until a signal or the mount goes.
import { loadConfig } from '../config/index.js';
import { createLogger } from '../log.js';
import { startNode } from '../node.js';
import { parseFlags } from './flags.js';

export async function runMount(argv: string[]): Promise<number> {
  const { flags, rest } = parseFlags(argv, { config: 'string', 'no-expand-env': 'boolean', debug: 'boolean', 'skip-unmount': 'boolean' }, 'mount');
  const config = loadConfig({ path: flags.config as string | undefined, noExpandEnv: flags['no-expand-env'] === true });
  if (flags.debug) config.log.debug = true;
  // `litefs mount -- CMD ARGS`: the command is the supervised application.
  if (rest.length) config.exec = [{ cmd: rest.map(shellQuote).join(' '), ifCandidate: false }];
  const log = createLogger(config.log);
  log.info({ path: config.configPath }, 'config file read');
  const node = await startNode(config, log);
  return node.done;
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
