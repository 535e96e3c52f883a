// HELLO (docs/protocol.md): the first record of every stream, the primary
// introducing itself (and, for a returning old primary, how many of its
// commits are discarded). JSON, checked key by key.
import { encodeRecord, failer, failFor, PROTOCOL_VERSION, recordLabel, RecordType, strictUtf8, type Fail, type StreamRecord } from './records.js';

export interface HelloInfo {
  version: number; hostname: string; advertiseUrl?: string; nodeId?: string; clusterId?: string; heartbeatMs?: number;
  /** Per database: transactions the replica committed as primary that this primary never got (discarded by the snapshot that follows). */
  discarded?: Record<string, number>;
}

/** Checks a HELLO object; returns only the known keys (unknown ones are ignored, for forward compatibility). */
function checkHello(value: unknown, fail: Fail): HelloInfo {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('HELLO payload is not a JSON object');
  const v = value as Record<string, unknown>;
  if (v.version !== PROTOCOL_VERSION) fail(`protocol version ${JSON.stringify(v.version)} is not supported (this node speaks ${PROTOCOL_VERSION})`);
  if (typeof v.hostname !== 'string' || v.hostname === '') fail('HELLO "hostname" must be a non-empty string');
  const info: HelloInfo = { version: PROTOCOL_VERSION, hostname: v.hostname };
  for (const key of ['advertiseUrl', 'nodeId', 'clusterId'] as const) {
    const field = v[key];
    if (field === undefined) continue;
    if (typeof field !== 'string') fail(`HELLO "${key}" must be a string`);
    info[key] = field;
  }
  if (v.heartbeatMs !== undefined) {
    if (!Number.isSafeInteger(v.heartbeatMs) || (v.heartbeatMs as number) < 1) fail('HELLO "heartbeatMs" must be a positive integer');
    info.heartbeatMs = v.heartbeatMs as number;
  }
  if (v.discarded !== undefined) {
    const d = v.discarded as Record<string, unknown>;
    if (typeof d !== 'object' || d === null || Object.values(d).some((n) => !Number.isSafeInteger(n) || (n as number) < 0)) fail('HELLO "discarded" must map database names to counts');
    info.discarded = d as Record<string, number>;
  }
  return info;
}

export function helloRecord(info: HelloInfo, timestamp = Date.now()): Buffer {
  const checked = checkHello(info, failer(recordLabel(undefined, RecordType.Hello)));
  return encodeRecord({ type: RecordType.Hello, timestamp, payload: Buffer.from(JSON.stringify(checked), 'utf8') });
}

export function decodeHello(r: StreamRecord): HelloInfo {
  const fail: Fail = failFor(r);
  if (r.type !== RecordType.Hello) fail('not a HELLO record');
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(r.payload));
  } catch (err) {
    fail(`HELLO payload is not UTF-8 JSON: ${(err as Error).message}`);
  }
  return checkHello(value, fail);
}
