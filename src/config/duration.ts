// Go-style durations ("10s", "1m30s", "500ms", "1.5h"), as LiteFS's YAML uses.

const UNIT_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  'µs': 1e3, // U+00B5 micro sign
  'μs': 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

const TERM = /(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * Parses a Go duration string into milliseconds (possibly fractional for
 * sub-millisecond units). Accepts an optional sign, one or more
 * `<number><unit>` terms with units ns, us/µs, ms, s, m, h, and a bare "0".
 * Returns undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  let s = text.trim();
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let ns = 0;
  let pos = 0;
  while (pos < s.length) {
    TERM.lastIndex = pos;
    const m = TERM.exec(s);
    if (!m) return undefined;
    const whole = m[1] ?? '';
    const frac = m[2];
    if (whole === '' && (frac === undefined || frac === '')) return undefined; // "s", ".s"
    const unit = UNIT_NS[m[3]!]!;
    ns += Number(whole || '0') * unit;
    if (frac) ns += Math.round(Number(`0.${frac}`) * unit);
    pos = TERM.lastIndex;
  }
  return (sign * ns) / 1e6;
}

/** Formats milliseconds as a compact duration that parseDuration reads back ("1m30s", "1h", "500ms", "0s"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(ms);
  if (rest < 1000) return `${sign}${rest}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = rest / 1000;
  return `${sign}${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}`;
}
