export { provisionFromBootPartition, STATE_TOKEN_FILE_NAME, type ProvisionOptions, type ProvisionOutcome } from "./provision.js";
export { PROVISION_STEPS, isProvisionStep, type ProvisionStep } from "./steps.js";
export { BOOT_TOKEN_FILE_NAME, DEFAULT_BOOT_DIRS, findBootTokenFile } from "./boot-file.js";
export { BootTokenFileError } from "./errors.js";
export { parseBootTokenFile, type BootTokenFile } from "./boot-token-file.js";
export { clearProvisionError, readProvisionError, writeProvisionError, PROVISION_ERROR_FILE_NAME } from "./error-file.js";
export { TOKEN_RECORD_FILE_NAME } from "./token-record.js";
