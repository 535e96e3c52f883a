// The Consul stand-in for tests: in-process (startConsulStandIn) or as a
// child process (spawnConsulStandIn). Production code never imports it.
export { startConsulStandIn, type StandIn, type StandInOptions } from './server.js';
export { spawnConsulStandIn, type SpawnedStandIn, type SpawnOptions } from './spawn.js';
export { ConsulState, type KVEntry, type Session } from './state.js';
