// The last provisioning error, for the adapter (and its status LEDs) to
// read: <state>/provision-error.txt contains the message that the failed run
// printed, one line. A run that succeeds or finds no boot file deletes it.
//
// The file can outlive its cause: when the user deletes the boot file
// instead of fixing it, cyphonic-firstboot.service no longer runs, so nothing
// deletes the error file. readProvisionError therefore reports an error only
// while a boot token file exists.
import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../../util/files.js";
import { findBootTokenFile } from "./boot-file.js";

export const PROVISION_ERROR_FILE_NAME = "provision-error.txt";

export function provisionErrorPath(stateDir: string): string {
  return path.join(stateDir, PROVISION_ERROR_FILE_NAME);
}

export function writeProvisionError(stateDir: string, message: string): void {
  writeFileAtomic(provisionErrorPath(stateDir), message.replace(/\s*\n\s*/g, " ") + "\n", 0o600);
}

export function clearProvisionError(stateDir: string): void {
  fs.rmSync(provisionErrorPath(stateDir), { force: true });
}

/** Returns the message of the last failed run, or null when there is none or no boot token file exists any more. */
export function readProvisionError(stateDir: string, bootDirs: readonly string[]): string | null {
  let text: string;
  try {
    text = fs.readFileSync(provisionErrorPath(stateDir), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  return findBootTokenFile(bootDirs) ? text.trim() : null;
}
