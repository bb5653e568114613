export {
  ADAPTER_CONFIG_DEFAULTS,
  ADAPTER_CONFIG_FIELDS,
  ADAPTER_CONFIG_KEYS,
  LOG_LEVELS,
  MAX_LEASE_SECONDS,
  MIN_LEASE_SECONDS,
  adapterConfigFileSchema,
  type AdapterConfigFile,
  type AdapterConfigKey,
  type LogLevel,
} from "./schema.js";
export {
  AdapterConfigError,
  mergeAdapterConfig,
  parseAdapterConfigText,
  parseAdapterFlags,
  readAdapterConfigFile,
  type AdapterFlagValues,
  type AdapterSettings,
} from "./load.js";
