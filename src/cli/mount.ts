// litefs mount: load the config, mount, run until a signal or the mount goes.
import { loadConfig } from '../config/index.js';
import { createLogger } from '../log.js';
import { startNode } from '../node.js';
import { parseFlags } from './flags.js';

export async function runMount(argv: string[]): Promise<number> {
  const { flags } = parseFlags(argv, { config: 'string', 'no-expand-env': 'boolean', debug: 'boolean', 'skip-unmount': 'boolean' }, 'mount');
  const config = loadConfig({ path: flags.config as string | undefined, noExpandEnv: flags['no-expand-env'] === true });
  if (flags.debug) config.log.debug = true;
  const log = createLogger(config.log);
  log.info({ path: config.configPath }, 'config file read');
  const node = await startNode(config, log);
  return node.done;
}
