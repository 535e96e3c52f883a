// litefs.yml → typed, validated Config. See docs/config.md for every key.

export {
  BACKUP_TYPES, ConfigError, DEFAULTS, LEASE_TYPES, LOG_FORMATS,
  type BackupConfig, type BackupType, type Config, type ConsulConfig, type DataConfig, type EtcdConfig, type ExecConfig,
  type FuseConfig, type HttpConfig, type LeaseConfig, type LeaseType, type LogConfig, type LogFormat, type ProxyConfig,
  type TracingConfig,
} from './types.js';
export { formatDuration, parseDuration } from './duration.js';
export { expandEnv, type Env } from './expand.js';
export { parseHostPort, type HostPort } from './addr.js';
export { configSearchPaths, findConfigPath, loadConfig, parseConfig, type LoadOptions, type ParseOptions } from './load.js';
