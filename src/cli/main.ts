#!/usr/bin/env node
// litefs: the command-line entry point. Each command is a module of its own.
import { ConfigError } from '../config/index.js';
import { MountError } from '../fuse/index.js';
import { UsageError } from './flags.js';
import { VERSION } from '../version.js';

const USAGE = `litefs ${VERSION}: a replicated SQLite filesystem

Usage: litefs <command> [flags]

Commands:
  mount     mount the filesystem and run the node (-config PATH)
  import    send a database file to the primary (-name DB [-url URL | -config PATH] FILE)
  export    fetch a consistent copy of a database (-name DB [-url URL | -config PATH] FILE)
  run       run a command against the local node ([-promote] [-if-candidate] [-url URL | -config PATH] -- CMD)
  restore   rebuild a database from its backup (-config PATH -o FILE [-txid N | -timestamp RFC3339]
            [-if-db-not-exists] [-if-replica-exists] [-parallelism N] DB)
  backups   list the backed-up databases, or one database's generations, snapshots and segments ([-config PATH] [-json] [DB])
  version   print the version
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case 'mount': {
      const { runMount } = await import('./mount.js');
      return runMount(args);
    }
    case 'import':
    case 'export': {
      const { runImport, runExport } = await import('./transfer.js');
      return command === 'import' ? runImport(args) : runExport(args);
    }
    case 'run': {
      const { runRun } = await import('./run.js');
      return runRun(args);
    }
    case 'restore':
    case 'backups': {
      const { runRestore, runBackups } = await import('./backup.js');
      return command === 'restore' ? runRestore(args) : runBackups(args);
    }
    case 'version':
    case '-version':
    case '--version':
      process.stdout.write(`litefs ${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '-h':
    case '-help':
    case '--help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`litefs: unknown command "${command}" (run "litefs help")`);
  }
}

/**
 * Backup and restore failures (a bucket, an object, a plan) and a transaction log that cannot be
 * written (a full disk): one line each. By name, so that commands do not load modules they do not use.
 */
const ONE_LINE_ERRORS = new Set(['RestorePlanError', 'BackupObjectError', 'ObjectStoreError', 'RestoreError', 'LogWriteError']);

/** Errors users cause are one line; anything else is a bug and keeps its stack. */
function report(err: unknown): number {
  if (err instanceof UsageError || err instanceof ConfigError || err instanceof MountError || (err instanceof Error && ONE_LINE_ERRORS.has(err.name))) {
    process.stderr.write(`${err.message.startsWith('litefs') ? '' : 'litefs: '}${err.message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
  process.stderr.write(`litefs: ${(err as Error)?.stack ?? err}\n`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined && code >= 0) process.exitCode = code;
  },
  (err) => {
    process.exitCode = report(err);
  },
);
