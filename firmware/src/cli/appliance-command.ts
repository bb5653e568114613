// `cyphonic appliance-provision`: first-boot provisioning of the appliance
// from the token file on the FAT boot partition. The steps, their crash
// safety and the handling of the missing real-time clock are described in
// appliance/provisioning/provision.ts.
import { parseArgs } from "node:util";
import {
  DEFAULT_BOOT_DIRS,
  PROVISION_STEPS,
  ProvisionStep,
  clearProvisionError,
  isProvisionStep,
  provisionFromBootPartition,
  writeProvisionError,
} from "../appliance/provisioning/index.js";
import { Logger, logger } from "../util/log.js";
import { UsageError } from "./common.js";

const CRASH_HOOK_VARIABLE = "CYPHONIC_PROVISION_CRASH_AT";

export const APPLIANCE_PROVISION_USAGE = `cyphonic appliance-provision --state DIR [options]
  --state DIR          the adapter's state directory; receives token.txt (mode 0600)
  --boot DIR           mount point of the FAT boot partition, repeatable, searched in
                       order for cyphonic-token.txt (default /boot/firmware, then /boot)
  --root DIR           root of the file system whose network profiles, firewall
                       interface names and adapter.json are rewritten (default /)
  --allow-crash-hook   for tests only: honour ${CRASH_HOOK_VARIABLE}=STEP, which kills
                       the process with SIGKILL right after STEP
  exit status: 0 provisioned or nothing to do, 2 the token file must be fixed or
  removed, 1 any other failure (the next boot retries). When provisioning fails,
  the message is also written to DIR/provision-error.txt.`;

export function runApplianceProvision(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: {
      state: { type: "string" },
      boot: { type: "string", multiple: true },
      root: { type: "string" },
      "allow-crash-hook": { type: "boolean" },
    },
    strict: true,
  });
  if (!values.state) throw new UsageError("--state DIR is required: the adapter's state directory, /var/lib/cyphonic on the appliance", APPLIANCE_PROVISION_USAGE);
  const stateDir = values.state;
  const bootDirs = values.boot ?? DEFAULT_BOOT_DIRS;
  const log = logger("provision");
  const afterStep = crashHook(process.env[CRASH_HOOK_VARIABLE], values["allow-crash-hook"] ?? false, log);

  try {
    const outcome = provisionFromBootPartition({ bootDirs, stateDir, rootDir: values.root ?? "/", log, afterStep });
    clearProvisionError(stateDir);
    if (outcome === "no-boot-file") log.info({ bootDirs }, "no token file on the boot partition; nothing to do");
    else log.info({ outcome }, "provisioning from the boot partition finished");
  } catch (err) {
    try {
      writeProvisionError(stateDir, err instanceof Error ? err.message : String(err));
    } catch (writeErr) {
      log.error({ err: writeErr, stateDir }, "could not write the provisioning error file");
    }
    throw err;
  }
}

/**
 * Returns the test hook that kills the process after the step named in the
 * environment, or undefined. Without --allow-crash-hook the variable is
 * ignored, so a stray variable on an appliance can never stop provisioning.
 */
function crashHook(target: string | undefined, allowed: boolean, log: Logger): ((step: ProvisionStep) => void) | undefined {
  if (!target) return undefined;
  if (!allowed) {
    log.warn({ variable: CRASH_HOOK_VARIABLE }, "ignoring the crash test hook, because --allow-crash-hook is not set");
    return undefined;
  }
  if (!isProvisionStep(target)) {
    throw new UsageError(`${CRASH_HOOK_VARIABLE} must be one of ${PROVISION_STEPS.join(", ")}, got "${target}"`, APPLIANCE_PROVISION_USAGE);
  }
  return (step) => {
    // SIGKILL, like a power cut, runs no exit handlers and flushes nothing.
    if (step === target) process.kill(process.pid, "SIGKILL");
  };
}
