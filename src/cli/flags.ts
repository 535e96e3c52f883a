// Go-style command-line flags, as LiteFS takes them: -name value,
// -name=value, --name value, boolean -name; "--" ends the flags.
export type FlagSpec = Record<string, 'string' | 'boolean'>;

export class UsageError extends Error {}

export interface ParsedFlags {
  flags: Record<string, string | boolean>;
  args: string[];
  /** Everything after "--". */
  rest: string[];
}

export function parseFlags(argv: string[], spec: FlagSpec, command: string): ParsedFlags {
  const flags: Record<string, string | boolean> = {};
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return { flags, args, rest: argv.slice(i + 1) };
    if (!arg.startsWith('-') || arg === '-') {
      args.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const kind = spec[name];
    if (!kind) {
      const known = Object.keys(spec).map((k) => '-' + k).join(', ');
      throw new UsageError(`litefs ${command}: unknown flag -${name} (known: ${known || 'none'})`);
    }
    if (kind === 'boolean') {
      const v = eq < 0 ? 'true' : body.slice(eq + 1);
      if (v !== 'true' && v !== 'false') throw new UsageError(`litefs ${command}: -${name} takes true or false, got "${v}"`);
      flags[name] = v === 'true';
    } else if (eq >= 0) {
      flags[name] = body.slice(eq + 1);
    } else {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`litefs ${command}: -${name} needs a value`);
      flags[name] = v;
    }
  }
  return { flags, args, rest: [] };
}
