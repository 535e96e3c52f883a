// Environment expansion of the raw config text, before YAML parsing, with
// LiteFS's forms:
//   $NAME, ${NAME}            → the variable's value ('' when unset)
//   ${NAME == "v"}, ${NAME != 'v'}  → true / false
//   ${NAME == OTHER}          → compares two variables
// `$` followed by anything else (a space, `$`, a quote, end of text) stays as
// written. A `${` without `}`, or a `${...}` that is none of the forms above,
// is an error (LiteFS silently turns those into '').

import { ConfigError } from './types.js';

export type Env = Readonly<Record<string, string | undefined>>;

const NAME_CHAR = /[A-Za-z0-9_]/;
const NAME = /^\w+$/;
const COMPARE_QUOTED = /^(\w+)\s*(==|!=)\s*(?:"(.*)"|'(.*)')$/;
const COMPARE_VARS = /^(\w+)\s*(==|!=)\s*(\w+)$/;

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** Expands one `${...}` body, or returns undefined when it is not a supported form. */
function expandBraced(body: string, env: Env): string | undefined {
  const inner = body.trim();
  if (NAME.test(inner)) return env[inner] ?? '';
  let m = COMPARE_QUOTED.exec(inner);
  if (m) {
    const actual = env[m[1]!] ?? '';
    const wanted = m[3] ?? m[4] ?? '';
    return String(m[2] === '==' ? actual === wanted : actual !== wanted);
  }
  m = COMPARE_VARS.exec(inner);
  if (m) {
    const a = env[m[1]!] ?? '';
    const b = env[m[3]!] ?? '';
    return String(m[2] === '==' ? a === b : a !== b);
  }
  return undefined;
}

/**
 * Returns `text` with environment references replaced from `env`.
 * Throws ConfigError (naming `file` and the line) on a malformed `${`.
 */
export function expandEnv(text: string, env: Env, file = 'litefs.yml'): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf('$', i);
    if (dollar < 0 || dollar === text.length - 1) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, dollar);
    const next = text[dollar + 1]!;
    if (next === '{') {
      const close = text.indexOf('}', dollar + 2);
      const newline = text.indexOf('\n', dollar + 2);
      const line = lineAt(text, dollar);
      if (close < 0 || (newline >= 0 && newline < close)) {
        throw new ConfigError(`${file}: unterminated "\${" in environment expansion (line ${line}); close it with "}" or load with -no-expand-env`, { file, line });
      }
      const body = text.slice(dollar + 2, close);
      const value = expandBraced(body, env);
      if (value === undefined) {
        throw new ConfigError(
          `${file}: unsupported environment expansion "\${${body}}" (line ${line}); use $NAME, \${NAME}, \${NAME == "value"} or \${NAME != "value"}, or load with -no-expand-env`,
          { file, line },
        );
      }
      out += value;
      i = close + 1;
    } else if (/[0-9]/.test(next)) {
      // Like Go's os.Expand, a digit after `$` is a one-character name.
      out += env[next] ?? '';
      i = dollar + 2;
    } else if (NAME_CHAR.test(next)) {
      let end = dollar + 1;
      while (end < text.length && NAME_CHAR.test(text[end]!)) end++;
      out += env[text.slice(dollar + 1, end)] ?? '';
      i = end;
    } else {
      out += '$';
      i = dollar + 1;
    }
  }
  return out;
}
