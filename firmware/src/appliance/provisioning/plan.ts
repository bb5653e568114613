// The read-boot-file step: what the boot partition and the state directory
// hold decides which of the remaining steps run. The rules are in the
// header of provision.ts.
import fs from "node:fs";
import path from "node:path";
import { readTokenFile } from "../../node/token-file.js";
import { Logger } from "../../util/log.js";
import { findBootTokenFile } from "./boot-file.js";
import { BootTokenFile, parseBootTokenFile, sha256Hex } from "./boot-token-file.js";
import { BootTokenFileError } from "./errors.js";
import { getKeyfileValue } from "./keyfile.js";
import { RootFiles, readRootFile } from "./root-files.js";
import { readTokenRecord } from "./token-record.js";

export type ProvisionPlan =
  /** No boot token file: nothing to do. */
  | { kind: "none" }
  /** Apply the settings, copy the token, retire the boot file. */
  | { kind: "provision"; bootFile: string; bootFileBytes: number; parsed: BootTokenFile }
  /** The token is already in the state directory or redeemed: only retire the boot file. */
  | { kind: "retire"; bootFile: string };

export interface PlanInput {
  bootDirs: readonly string[];
  stateDir: string;
  stateTokenFile: string;
  files: RootFiles;
  log: Logger;
}

/** Decides the plan. Throws BootTokenFileError when the user must fix or remove the boot file. */
export function planProvisioning(input: PlanInput): ProvisionPlan {
  const { stateDir, log } = input;
  const bootFile = findBootTokenFile(input.bootDirs);
  if (!bootFile) return { kind: "none" };
  const data = fs.readFileSync(bootFile);
  const identityFile = path.join(stateDir, "identity.json");
  const hasIdentity = fs.existsSync(identityFile);
  const record = readTokenRecord(stateDir, log);

  let parsed: BootTokenFile;
  try {
    parsed = parseBootTokenFile(data);
  } catch (err) {
    // The wipe keeps the size, so a file of the recorded size that no longer
    // parses, next to a durable copy of the recorded token, is this run's own
    // file with a wipe that a power cut interrupted.
    // NOTE: with identity.json present, a new file that does not parse but
    // has exactly the recorded size is also taken for a wiped one and deleted.
    const copied = hasIdentity || stateTokenSha256(input.stateTokenFile) === record?.tokenSha256;
    if (err instanceof BootTokenFileError && record && record.bootFileBytes === data.length && copied) {
      log.warn({ file: bootFile }, "the boot token file was being wiped when the last run stopped; finishing its retirement");
      return { kind: "retire", bootFile };
    }
    throw err;
  }

  if (hasIdentity) {
    if (record?.tokenSha256 === parsed.tokenSha256) {
      // The AS accepts this token again only from this adapter's key, so retiring it loses nothing.
      log.info({ file: bootFile }, "the boot token file contains the token this adapter already redeemed; retiring it");
      return { kind: "retire", bootFile };
    }
    throw new BootTokenFileError(
      null,
      null,
      `this adapter is already provisioned (${identityFile} exists), so the token in this file was not used and the file was left in place; delete it from the boot partition, and the adapter keeps its identity`,
    );
  }
  checkInterfacesDiffer(parsed, input.files);
  return { kind: "provision", bootFile, bootFileBytes: data.length, parsed };
}

/** Returns the SHA-256 of the token in the state directory's token file, or null when there is no valid one. */
function stateTokenSha256(file: string): string | null {
  if (!fs.existsSync(file)) return null;
  try {
    return sha256Hex(readTokenFile(file).token);
  } catch {
    return null;
  }
}

/**
 * Checks that WAN and LAN stay different ports when the file sets only one
 * of them, against the port that the other profile names now.
 */
function checkInterfacesDiffer(parsed: BootTokenFile, files: RootFiles): void {
  const { wanInterface, lanInterface } = parsed.network;
  if ((wanInterface === undefined) === (lanInterface === undefined)) return;
  const currentWan = getKeyfileValue(readRootFile(files.wanProfile), "connection", "interface-name");
  const currentLan = getKeyfileValue(readRootFile(files.lanProfile), "connection", "interface-name");
  if (wanInterface !== undefined && wanInterface === currentLan) {
    throw new BootTokenFileError(
      parsed.networkLines.get("wan_interface") ?? null,
      "wan_interface",
      `wan_interface is ${wanInterface}, which is the LAN port now; add the line lan_interface=${currentWan ?? "eth0"} to swap the ports`,
    );
  }
  if (lanInterface !== undefined && lanInterface === currentWan) {
    throw new BootTokenFileError(
      parsed.networkLines.get("lan_interface") ?? null,
      "lan_interface",
      `lan_interface is ${lanInterface}, which is the WAN port now; add the line wan_interface=${currentLan ?? "eth1"} to swap the ports`,
    );
  }
}
