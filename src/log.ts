// The process logger: pino (as fastify uses it), printing JSON lines or,
// for log.format "text", one readable line per record.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { LogConfig } from './config/index.js';

export type { Logger };

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Turns pino's JSON lines into `time LEVEL msg key=value ...`. */
function textStream(out: NodeJS.WritableStream, timestamp: boolean): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        const rec = JSON.parse(line) as Record<string, unknown>;
        const { level, time, msg, ...rest } = rec;
        let text = timestamp && typeof time === 'number' ? new Date(time).toISOString() + ' ' : '';
        text += `${LEVELS[level as number] ?? level} ${msg ?? ''}`;
        for (const [k, v] of Object.entries(rest)) {
          text += ` ${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`;
        }
        out.write(text + '\n');
      }
      done();
    },
  });
}

export function createLogger(config: Pick<LogConfig, 'format' | 'timestamp' | 'debug'>, out: NodeJS.WritableStream = process.stderr): Logger {
  const options = { level: config.debug ? 'debug' : 'info', base: undefined, timestamp: config.timestamp };
  return config.format === 'json' ? pino(options, out) : pino(options, textStream(out, config.timestamp));
}
