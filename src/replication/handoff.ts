// HANDOFF (docs/protocol.md): the primary passes its lease to one connected
// replica, on that replica's stream, after every transaction it holds.
import { encodeRecord, RecordType, StreamError, type StreamRecord } from './records.js';

export interface HandoffInfo {
  /** The backend's lease id (Consul session, etcd lease). */
  leaseId: string;
  /** The node the lease goes to (16 hex digits), so a stray record is refused. */
  nodeId?: string;
}

export function handoffRecord(info: HandoffInfo, timestamp = Date.now()): Buffer {
  return encodeRecord({ type: RecordType.Handoff, timestamp, payload: Buffer.from(JSON.stringify(info)) });
}

export function decodeHandoff(r: StreamRecord): HandoffInfo {
  let v: unknown;
  try {
    v = JSON.parse(r.payload.toString('utf8'));
  } catch {
    throw new StreamError('HANDOFF payload is not JSON');
  }
  const o = v as Record<string, unknown> | null;
  if (!o || typeof o !== 'object' || typeof o['leaseId'] !== 'string' || o['leaseId'] === '') throw new StreamError('HANDOFF payload has no leaseId');
  if (o['nodeId'] !== undefined && typeof o['nodeId'] !== 'string') throw new StreamError('HANDOFF nodeId is not a string');
  return { leaseId: o['leaseId'], nodeId: o['nodeId'] as string | undefined };
}
